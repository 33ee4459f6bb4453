"""Studies, the criteria they ask about every pair, and researchers' access to them."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_noop

# The wording is stored per study; the rating page translates it when it is still the default.
DEFAULT_CRITERIA: tuple[tuple[str, str], ...] = (
    ("alignment", gettext_noop("Which image better matches the description?")),
    ("representation", gettext_noop("Which image better represents {culture}?")),
    ("stereotype", gettext_noop("Which image is more stereotypical?")),
    ("offensiveness", gettext_noop("Which image is more offensive to you?")),
)


def _new_salt() -> str:
    return secrets.token_hex(32)


# Callables, so that the settings are read when a form or check asks, not at import.
def study_languages() -> list[tuple[str, str]]:
    # The languages with columns for a study's texts: a study is written in one of them.
    return list(settings.TEXT_LANGUAGES)


def study_language_default() -> str:
    return settings.LANGUAGE_CODE


class Study(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    # No check constraint on the codes: a language added to settings.TEXT_LANGUAGES (and
    # its translation columns) must not need a constraint rewritten.
    language = models.CharField(
        max_length=12,
        choices=study_languages,
        default=study_language_default,
        help_text="The language the study is written in: a text missing in a rater's language "
        "shows in this one.",
    )
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
    # The front door (issue 14): a panel link must carry this study id when it is set, and a
    # participant id of this form; a new rater needs an invite, a panel link, or this open.
    panel_study_id = models.CharField(
        max_length=120,
        blank=True,
        help_text="The panel's id of this study; a panel link with another study id is refused.",
    )
    panel_id_regex = models.CharField(
        max_length=200,
        blank=True,
        help_text="The form of the panel's participant ids, as a regular expression matched "
        "whole (Prolific: [0-9a-f]{24}); empty accepts letters, digits and . _ : @ -.",
    )
    open_to_signups = models.BooleanField(
        default=False,
        help_text="Anyone signed in may join from the study's link; otherwise raters come by "
        "invite or panel link only.",
    )
    max_raters = models.PositiveIntegerField(
        null=True, blank=True, help_text="No new raters past this many; empty: no cap."
    )
    completion_code = models.CharField(max_length=80, blank=True)
    completion_text = models.TextField(
        blank=True, help_text="Shown to a rater who finished, above the completion code."
    )
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
    # The optional questions in the study's own words; blank: the built-in wording.
    demographics_intro = models.TextField(
        blank=True, help_text="Shown above the optional questions about the rater."
    )
    age_band_question = models.CharField(max_length=300, blank=True, help_text="Empty: “Your age”.")
    languages_question = models.CharField(
        max_length=300, blank=True, help_text="Empty: “Languages you speak”."
    )
    years_lived_question = models.CharField(
        max_length=300,
        blank=True,
        help_text="Empty: “How many years have you lived in the culture you chose?” (or, to a "
        "rater who chose several, to think of the one they know best). A rater who chose "
        "several is told which ones under the question either way.",
    )
    pair_every_two_variants = models.BooleanField(
        default=False,
        help_text="Pair every two variants of a prompt and seed, not only the base with each "
        "fine-tuned variant.",
    )
    # Scoring (SCORING.md section 8a): the thresholds of the split and contested labels, and
    # the resampling sizes. The label is derived from the stored statistics and factions with
    # these thresholds; nDFU and van der Eijk's A are reported, never deciding.
    split_min_share = models.FloatField(
        default=0.2,
        help_text="A split needs its smaller faction to hold at least this share of the raters "
        "(and at least k of them); a smaller consistent faction shows as dissent.",
    )
    split_max_p = models.FloatField(
        default=0.01,
        help_text="A split (or dissent) needs rater heterogeneity significant below this p; "
        "factions are fitted where it is (a change takes effect at the next recompute).",
    )
    contested_max_top_share = models.FloatField(
        default=0.6, help_text="Below this share for the top answer, a row is contested."
    )
    score_permutations = models.PositiveIntegerField(
        default=1000, help_text="Permutations for the heterogeneity and group-association tests."
    )
    score_bootstrap = models.PositiveIntegerField(
        default=1000, help_text="Rater-cluster bootstrap resamples for intervals."
    )
    active = models.BooleanField(default=True)
    # When a researcher last pressed "Recompute now": the dashboard says "recompute queued"
    # until a score run starts after it.
    scores_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
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
            models.CheckConstraint(
                condition=Q(split_min_share__gte=0)
                & Q(split_min_share__lte=0.5)
                & Q(contested_max_top_share__gte=0)
                & Q(contested_max_top_share__lte=1)
                & Q(split_max_p__gt=0)
                & Q(split_max_p__lte=1),
                name="study_score_thresholds_valid",
            ),
            models.CheckConstraint(
                condition=Q(score_permutations__gte=1) & Q(score_bootstrap__gte=1),
                name="study_score_resampling_positive",
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


class StudyGrant(models.Model):
    """A researcher's access to one study's results, exports and API; superusers need none."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_grants"
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="grant_once_per_study_and_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.study}"
