"""Votes and their answers, one per criterion."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from ratings.models.pairs import AssignmentKind, Pair, Side
from ratings.models.raters import Rater
from ratings.models.studies import Criterion, Study


class VoteSource(models.TextChoices):
    BROWSER = "browser", "cast in the browser"
    IMPORT = "import", "imported from an earlier survey"


class Vote(models.Model):
    """One rater's answers on one pair, in terms of the pair's variants, never screen sides."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="votes")
    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="votes")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="votes")
    # Empty only for an imported vote, whose screen sides are unknown.
    shown_left = models.CharField(max_length=1, choices=Side.choices, blank=True)
    # "browser" for a vote cast here, "import" for one read by import_votes.
    source = models.CharField(
        max_length=10, choices=VoteSource.choices, default="browser", db_default="browser"
    )
    # The rater's cohorts when voting: a later change of cohort must not rewrite old votes.
    cohort_paths = models.JSONField(default=list)
    time_on_task_ms = models.PositiveIntegerField()
    comment = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=AssignmentKind.choices, default="pair")
    # For attention checks: whether the answers were what the check expects.
    check_passed = models.BooleanField(null=True, blank=True)
    # Under the study's minimum time on a pair: kept, flagged, counted as a failed check.
    too_fast = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

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
                condition=Q(shown_left__in=Side.values) | Q(shown_left="", source="import"),
                name="vote_shown_left_valid",
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
