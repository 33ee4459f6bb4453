"""Pairs of images, the assignments that serve them, and the coverage that decides which."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q

from ratings.models.cohorts import Cohort
from ratings.models.raters import Rater
from ratings.models.studies import Study


class Side(models.TextChoices):
    A = "a", "variant a"
    B = "b", "variant b"


class Pair(models.Model):
    """One prompt and seed rendered by two variants; `a` is the base when there is one."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="pairs")
    prompt = models.ForeignKey("generation.Prompt", on_delete=models.CASCADE, related_name="pairs")
    # Null only for pairs imported from an earlier survey, which have no images here and are
    # never served.
    seed = models.BigIntegerField(null=True, blank=True)
    image_a = models.ForeignKey(
        "generation.Image", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    image_b = models.ForeignKey(
        "generation.Image", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    variant_a = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.PROTECT, related_name="+"
    )
    variant_b = models.ForeignKey(
        "generation.ModelVariant", on_delete=models.PROTECT, related_name="+"
    )
    # An attention check shows one image twice; it is never served as a real pair or scored.
    is_attention_check = models.BooleanField(default=False)
    # The item id of a pair imported from an earlier survey (import_votes); empty otherwise.
    external_id = models.CharField(max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="pair_unique_images"),
            models.UniqueConstraint(
                fields=["study", "external_id", "variant_a", "variant_b"],
                condition=~Q(external_id=""),
                name="pair_unique_external_item",
            ),
            models.CheckConstraint(
                condition=(Q(image_a__isnull=False) & Q(image_b__isnull=False))
                | (Q(image_a__isnull=True) & Q(image_b__isnull=True) & ~Q(external_id="")),
                name="pair_images_unless_imported",
            ),
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
    # When the rater voted on it: one outcome per assignment, a vote or a skip, never both.
    voted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(voted_at__isnull=True) | Q(skipped_at__isnull=True),
                name="assignment_one_outcome",
            ),
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
