"""Stored score runs and their rows: scores, coherence, Bradley-Terry strengths."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from ratings.models.cohorts import Cohort
from ratings.models.studies import Criterion, Study


class ScoreRun(models.Model):
    """One computation of a study's scores: when, over which votes, with which settings."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="score_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    computed_at = models.DateTimeField(null=True, blank=True)
    # The votes covered: every vote of the study with id <= last_vote_id (flagged raters' votes
    # left out unless include_flagged).
    votes_covered = models.PositiveIntegerField(default=0)
    last_vote_id = models.BigIntegerField(null=True, blank=True)
    include_flagged = models.BooleanField(default=False)
    permutations = models.PositiveIntegerField()
    bootstrap = models.PositiveIntegerField()
    seed = models.BigIntegerField(default=0, help_text="Seed of the resampling; reruns agree.")
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["study", "status", "-computed_at"], name="scorerun_latest")]

    def __str__(self) -> str:
        return f"scores of {self.study} at {self.computed_at or self.started_at}"


class Score(models.Model):
    """Split-aware statistics of one cohort (any level) on one criterion and variant pair."""

    run = models.ForeignKey(ScoreRun, on_delete=models.CASCADE, related_name="scores")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="+")
    variant_a = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.CASCADE, related_name="+"
    )
    variant_b = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.CASCADE, related_name="+"
    )
    n_raters = models.PositiveIntegerField()
    n_votes = models.PositiveIntegerField()
    count_a = models.PositiveIntegerField()
    count_tie = models.PositiveIntegerField()
    count_b = models.PositiveIntegerField()
    count_skip = models.PositiveIntegerField()
    # b / (a + b) and (b + tie/2) / (a + tie + b), with rater-cluster bootstrap intervals.
    share_b = models.FloatField(null=True, blank=True)
    share_b_low = models.FloatField(null=True, blank=True)
    share_b_high = models.FloatField(null=True, blank=True)
    share_b_ties_half = models.FloatField(null=True, blank=True)
    share_b_ties_half_low = models.FloatField(null=True, blank=True)
    share_b_ties_half_high = models.FloatField(null=True, blank=True)
    alpha = models.FloatField(null=True, blank=True, help_text="Krippendorff's alpha, ordinal.")
    ndfu = models.FloatField(null=True, blank=True)
    agreement = models.FloatField(null=True, blank=True, help_text="Van der Eijk's A.")
    heterogeneity_p = models.FloatField(null=True, blank=True)
    cohesion_in = models.FloatField(null=True, blank=True)
    cohesion_cross = models.FloatField(null=True, blank=True)
    gai = models.FloatField(null=True, blank=True)
    gai_p = models.FloatField(null=True, blank=True)
    gai_q = models.FloatField(null=True, blank=True, help_text="Benjamini-Hochberg adjusted.")
    # Where two factions were fitted: the pairs that divide them most, largest difference
    # first, as [{"pair": id, "mean_first": …, "mean_second": …, "n_first": …, "n_second": …}].
    dividing_pairs = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "cohort", "criterion", "variant_a", "variant_b"],
                name="score_once_per_cell",
            ),
            models.CheckConstraint(
                condition=Q(n_votes=F("count_a") + F("count_tie") + F("count_b") + F("count_skip")),
                name="score_counts_add_up",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cohort_id}/{self.criterion_id}"


class Faction(models.Model):
    """One of the two factions of a score row (SCORING.md section 8), the larger at position 0.

    Stored where the raters were heterogeneous (p below the study's split_max_p) and two latent
    classes fit better than one; whether the row is a split, or shows dissent, is derived at
    read time with the study's thresholds. `lean` is the mean over raters of each rater's mean
    coded answer (a -1, tie 0, b +1); `profile` holds the faction's answers to the other
    criteria on the same pairs: {criterion key: {"n_raters", "a", "tie", "b", "lean"}}.
    """

    score = models.ForeignKey(Score, on_delete=models.CASCADE, related_name="factions")
    position = models.PositiveSmallIntegerField()
    n_raters = models.PositiveIntegerField()
    share = models.FloatField()
    lean = models.FloatField(null=True, blank=True)
    lean_low = models.FloatField(null=True, blank=True)
    lean_high = models.FloatField(null=True, blank=True)
    count_a = models.PositiveIntegerField()
    count_tie = models.PositiveIntegerField()
    count_b = models.PositiveIntegerField()
    count_skip = models.PositiveIntegerField()
    profile = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["score", "position"]
        constraints = [
            models.UniqueConstraint(fields=["score", "position"], name="faction_once_per_place"),
            models.CheckConstraint(condition=Q(position__lte=1), name="faction_one_of_two"),
            models.CheckConstraint(
                condition=Q(share__gte=0) & Q(share__lte=1), name="faction_share_is_a_share"
            ),
        ]

    def __str__(self) -> str:
        return f"faction {self.position + 1} of score {self.score_id}"


class FactionMember(models.Model):
    """A rater's faction in one score row, with the posterior probability of belonging to it."""

    faction = models.ForeignKey(Faction, on_delete=models.CASCADE, related_name="members")
    rater = models.ForeignKey("ratings.Rater", on_delete=models.CASCADE, related_name="+")
    posterior = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["faction", "rater"], name="faction_member_once"),
            models.CheckConstraint(
                condition=Q(posterior__gte=0) & Q(posterior__lte=1),
                name="faction_member_posterior_is_a_probability",
            ),
        ]

    def __str__(self) -> str:
        return f"rater {self.rater_id} in {self.faction_id}"


class CoherenceScore(models.Model):
    """Representation answers where a rater chose one image as more stereotypical and offensive.

    `same`: the rater called that image the better representation too; `other`: the other image;
    `tie`: both equally.
    """

    run = models.ForeignKey(ScoreRun, on_delete=models.CASCADE, related_name="coherence")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    variant_a = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.CASCADE, related_name="+"
    )
    variant_b = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.CASCADE, related_name="+"
    )
    n_raters = models.PositiveIntegerField()
    same = models.PositiveIntegerField()
    tie = models.PositiveIntegerField()
    other = models.PositiveIntegerField()
    ndfu = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "cohort", "variant_a", "variant_b"], name="coherence_once_per_cell"
            )
        ]

    def __str__(self) -> str:
        return f"coherence {self.cohort_id}"


class StrengthScore(models.Model):
    """A variant's Bradley-Terry strength in a cohort on a criterion (more than two variants)."""

    run = models.ForeignKey(ScoreRun, on_delete=models.CASCADE, related_name="strengths")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.CASCADE, related_name="+"
    )
    strength = models.FloatField()
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "cohort", "criterion", "variant"], name="strength_once_per_cell"
            )
        ]

    def __str__(self) -> str:
        return f"strength of {self.variant_id} in {self.cohort_id}"
