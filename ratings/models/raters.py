"""Raters and how they enter a study: participation, consent, invites, cohort proposals."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from ratings.models.cohorts import Cohort
from ratings.models.studies import Study


def _new_invite_token() -> str:
    return secrets.token_urlsafe(24)


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
