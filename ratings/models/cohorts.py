"""Cohorts: culture labels kept as paths, `india`, `india:tamil`."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from ratings.cohorts import (
    MAX_DEPTH,
    CohortPathError,
    cohort_path_ancestors,
    cohort_path_normalize,
    cohort_path_parent,
)


def validate_cohort_path(value: str) -> None:
    try:
        if cohort_path_normalize(value) != value:
            raise ValidationError("Write the cohort path in lower case without spaces.")
    except CohortPathError as exc:
        raise ValidationError(str(exc)) from exc


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
