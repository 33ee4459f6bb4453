"""Studies, cohorts, raters, pairs and votes."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_noop

from ratings.cohorts import (
    MAX_DEPTH,
    CohortPathError,
    cohort_path_ancestors,
    cohort_path_normalize,
    cohort_path_parent,
)

# The wording is stored per study; the rating page translates it when it is still the default.
DEFAULT_CRITERIA: tuple[tuple[str, str], ...] = (
    ("alignment", gettext_noop("Which image better matches the description?")),
    ("representation", gettext_noop("Which image better represents {culture}?")),
    ("stereotype", gettext_noop("Which image is more stereotypical?")),
    ("offensiveness", gettext_noop("Which image is more offensive to you?")),
)


def _new_salt() -> str:
    return secrets.token_hex(32)


def _new_invite_token() -> str:
    return secrets.token_urlsafe(24)


def validate_cohort_path(value: str) -> None:
    try:
        if cohort_path_normalize(value) != value:
            raise ValidationError("Write the cohort path in lower case without spaces.")
    except CohortPathError as exc:
        raise ValidationError(str(exc)) from exc


class Study(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    consent_text = models.TextField(
        blank=True,
        help_text="Shown to every rater before the first pair; raters must accept it to rate.",
    )
    raters_per_pair = models.PositiveSmallIntegerField(
        default=5, help_text="Votes wanted on each pair from each cohort."
    )
    min_cohort_size = models.PositiveSmallIntegerField(
        "k",
        default=5,
        help_text="Smallest number of raters a cohort needs before its results are shown.",
    )
    cohorts = models.ManyToManyField("Cohort", related_name="studies", blank=True)
    variants = models.ManyToManyField("generation.ModelVariant", related_name="studies", blank=True)
    # Entry from crowd-work panels: the query parameters that carry the panel's ids differ
    # between panels, so they are settings.
    panel_rater_param = models.CharField(max_length=40, default="PROLIFIC_PID")
    panel_study_param = models.CharField(max_length=40, default="STUDY_ID")
    panel_session_param = models.CharField(max_length=40, default="SESSION_ID")
    completion_code = models.CharField(max_length=80, blank=True)
    completion_url = models.URLField(
        max_length=500, blank=True, help_text="Where a rater who finished is sent, if anywhere."
    )
    pairs_per_rater = models.PositiveSmallIntegerField(
        default=20, help_text="The quota of pairs a rater is asked to rate."
    )
    outgroup_share = models.FloatField(
        default=0.0, help_text="Share of a rater's pairs drawn from outside their cohorts."
    )
    attention_check_rate = models.FloatField(
        default=0.1, help_text="Share of served pairs that are attention checks."
    )
    max_failed_checks = models.PositiveSmallIntegerField(
        default=1, help_text="A rater who fails more checks than this is flagged."
    )
    min_seconds_per_pair = models.FloatField(
        default=3.0, help_text="A vote faster than this fails the time check."
    )
    ask_demographics = models.BooleanField(
        default=True, help_text="Ask the optional questions: age band, languages, years lived."
    )
    pair_every_two_variants = models.BooleanField(
        default=False,
        help_text="Pair every two variants of a prompt and seed, not only the base with each "
        "fine-tuned variant.",
    )
    active = models.BooleanField(default=True)
    # Exported rater ids are HMACs under this salt, so they differ between studies and cannot
    # be reversed to a user id.
    pseudonym_salt = models.CharField(max_length=64, default=_new_salt, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["name"]
        permissions = [("export_study", "Can export a study's votes and scores")]
        constraints = [
            models.CheckConstraint(
                condition=Q(raters_per_pair__gte=1), name="study_raters_per_pair_positive"
            ),
            models.CheckConstraint(
                condition=Q(min_cohort_size__gte=1), name="study_min_cohort_size_positive"
            ),
            models.CheckConstraint(
                condition=Q(outgroup_share__gte=0) & Q(outgroup_share__lte=1),
                name="study_outgroup_share_is_a_share",
            ),
            models.CheckConstraint(
                condition=Q(attention_check_rate__gte=0) & Q(attention_check_rate__lte=1),
                name="study_attention_check_rate_is_a_share",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Criterion(models.Model):
    """One question a study asks about every pair, in the study's own words."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=40)
    question = models.CharField(
        max_length=300, help_text="{culture} is replaced by the rater's cohort name."
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        verbose_name_plural = "criteria"
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="criterion_unique_key_in_study")
        ]

    def __str__(self) -> str:
        return self.key

    def question_for(self, culture: str) -> str:
        return self.question.replace("{culture}", culture)


class CohortQuerySet(models.QuerySet):
    def subtree(self, path: str) -> CohortQuerySet:
        """Return the cohort at `path` and every cohort below it."""
        return self.filter(Q(path=path) | Q(path__startswith=path + ":"))


class Cohort(models.Model):
    """A culture label kept as a path: `india`, `india:tamil`, `india:tamil:contemporary`."""

    path = models.CharField(max_length=120, unique=True, validators=[validate_cohort_path])
    name = models.CharField(max_length=120, help_text="The name raters see.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        editable=False,
    )
    depth = models.PositiveSmallIntegerField(editable=False)

    objects = CohortQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.CheckConstraint(
                condition=Q(depth__gte=1) & Q(depth__lte=MAX_DEPTH), name="cohort_depth_in_range"
            ),
            models.CheckConstraint(
                condition=(Q(depth=1) & Q(parent__isnull=True))
                | (Q(depth__gt=1) & Q(parent__isnull=False)),
                name="cohort_parent_matches_depth",
            ),
        ]

    def __str__(self) -> str:
        return self.path

    def save(self, *args, **kwargs) -> None:
        # Parent and depth follow from the path, so they can never disagree with it.
        self.path = cohort_path_normalize(self.path)
        self.depth = len(cohort_path_ancestors(self.path))
        parent_path = cohort_path_parent(self.path)
        self.parent = Cohort.objects.get(path=parent_path) if parent_path else None
        super().save(*args, **kwargs)


class Rater(models.Model):
    """The rating profile of a user: cohorts, consent and an optional panel id."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rater"
    )
    cohorts = models.ManyToManyField(Cohort, related_name="raters", blank=True)
    panel_id = models.CharField(max_length=120, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"rater {self.pk}"

    def cohort_paths(self) -> list[str]:
        return sorted(self.cohorts.values_list("path", flat=True))


class Participation(models.Model):
    """A rater's part in one study: consent, panel ids, answers about themselves, quality."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participations")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="participations")
    consented_at = models.DateTimeField(null=True, blank=True)
    panel_study_id = models.CharField(max_length=120, blank=True)
    panel_session_id = models.CharField(max_length=120, blank=True)
    # Optional, each skippable: age band, languages, years lived in the culture.
    demographics = models.JSONField(default=dict, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    checks_passed = models.PositiveIntegerField(default=0)
    checks_failed = models.PositiveIntegerField(default=0)
    # Set when checks_failed exceeds the study's allowance; votes stay, scores leave them out.
    flagged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "rater"], name="participation_once_per_study")
        ]

    def __str__(self) -> str:
        return f"{self.rater} in {self.study}"


class ConsentDecline(models.Model):
    """That someone declined a study's consent, and when: nothing about who."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="declines")
    declined_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"decline of {self.study}"


class StudyInvite(models.Model):
    """A sign-up link an admin hands out for one study."""

    token = models.CharField(max_length=64, unique=True, default=_new_invite_token, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="invites")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")),
                name="invite_uses_within_max",
            )
        ]

    def __str__(self) -> str:
        return f"invite to {self.study}"


class CohortProposal(models.Model):
    """A rater's own name for a culture the study does not list yet, for admins to decide."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cohort_proposals")
    rater = models.ForeignKey(
        Rater, on_delete=models.SET_NULL, null=True, blank=True, related_name="cohort_proposals"
    )
    text = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    cohort = models.ForeignKey(
        "Cohort",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The cohort the proposal was accepted as.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.text


class Side(models.TextChoices):
    A = "a", "variant a"
    B = "b", "variant b"


class Pair(models.Model):
    """One prompt and seed rendered by two variants; `a` is the base when there is one."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="pairs")
    prompt = models.ForeignKey("generation.Prompt", on_delete=models.CASCADE, related_name="pairs")
    seed = models.BigIntegerField()
    image_a = models.ForeignKey("generation.Image", on_delete=models.PROTECT, related_name="+")
    image_b = models.ForeignKey("generation.Image", on_delete=models.PROTECT, related_name="+")
    variant_a = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.PROTECT, related_name="+"
    )
    variant_b = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.PROTECT, related_name="+"
    )
    # An attention check shows one image twice; it is never served as a real pair or scored.
    is_attention_check = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="pair_unique_images"),
            models.CheckConstraint(
                condition=Q(is_attention_check=True) | ~Q(image_a=F("image_b")),
                name="pair_images_differ_unless_check",
            ),
        ]
        indexes = [models.Index(fields=["study", "prompt"], name="pair_study_prompt")]

    def __str__(self) -> str:
        return f"pair {self.pk}"


class AssignmentKind(models.TextChoices):
    PAIR = "pair", "pair"
    IDENTICAL_CHECK = "identical", "attention check: one image twice"
    REPEAT_CHECK = "repeat", "attention check: an earlier pair, sides swapped"


class Assignment(models.Model):
    """A pair served to a rater, with the side its `a` image was shown on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="assignments")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=10, choices=AssignmentKind.choices, default="pair")
    # For a repeat check: the earlier assignment of the same pair, shown with sides swapped.
    repeat_of = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # The rater cohort whose coverage this pair counts toward; empty for out-group and checks.
    cohort = models.ForeignKey(
        "Cohort", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    shown_left = models.CharField(max_length=1, choices=Side.choices)
    served_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    skipped_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            # A repeat check serves the same pair again, so it is exempt.
            models.UniqueConstraint(
                fields=["rater", "pair"],
                condition=~Q(kind="repeat"),
                name="assignment_once_per_rater",
            ),
            models.CheckConstraint(
                condition=Q(shown_left__in=Side.values), name="assignment_shown_left_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}"


class Vote(models.Model):
    """One rater's answers on one pair, in terms of the pair's variants, never screen sides."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="votes")
    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="votes")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="votes")
    shown_left = models.CharField(max_length=1, choices=Side.choices)
    # The rater's cohorts when voting: a later change of cohort must not rewrite old votes.
    cohort_paths = models.JSONField(default=list)
    time_on_task_ms = models.PositiveIntegerField()
    comment = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=AssignmentKind.choices, default="pair")
    # For attention checks: whether the answers were what the check expects.
    check_passed = models.BooleanField(null=True, blank=True)
    # Under the study's minimum time on a pair: kept, flagged, counted as a failed check.
    too_fast = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A repeat check is the one second vote on a pair a rater may give.
            models.UniqueConstraint(
                fields=["rater", "pair"],
                condition=~Q(kind="repeat"),
                name="vote_once_per_rater_and_pair",
            ),
            models.UniqueConstraint(
                fields=["rater", "pair"],
                condition=Q(kind="repeat"),
                name="vote_one_repeat_per_rater_and_pair",
            ),
            models.CheckConstraint(
                condition=Q(shown_left__in=Side.values), name="vote_shown_left_valid"
            ),
        ]
        indexes = [models.Index(fields=["study", "created_at"], name="vote_study_created")]

    def __str__(self) -> str:
        return f"vote {self.pk}"


class Choice(models.TextChoices):
    A = "a", "variant a"
    B = "b", "variant b"
    TIE = "tie", "both equally"
    SKIP = "skip", "can't judge"


class Answer(models.Model):
    """A vote's answer to one criterion."""

    vote = models.ForeignKey(Vote, on_delete=models.CASCADE, related_name="answers")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="answers")
    choice = models.CharField(max_length=4, choices=Choice.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["vote", "criterion"], name="answer_once_per_criterion"),
            models.CheckConstraint(
                condition=Q(choice__in=Choice.values), name="answer_choice_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.criterion_id}={self.choice}"


class PairCoverage(models.Model):
    """Votes a pair has from one cohort, kept as votes are cast, so assignment never counts."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="coverage")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    votes = models.PositiveIntegerField(default=0)
    # Votes from raters of other cultures, kept on the row of the prompt's root culture only,
    # so out-group assignment can take the pair with the fewest of them from an index.
    outgroup_votes = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "cohort"], name="coverage_once_per_cohort")
        ]
        indexes = [
            models.Index(fields=["study", "cohort", "votes", "pair"], name="coverage_least_first"),
            models.Index(
                fields=["study", "cohort", "outgroup_votes", "pair"],
                name="coverage_outgroup_least_first",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair} in {self.cohort}: {self.votes}"
