from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import slugify
from modeltranslation.admin import TranslationAdmin, TranslationTabularInline
from modeltranslation.translator import translator
from modeltranslation.utils import build_localized_fieldname

from ratings.entry import services
from ratings.entry.forms import CohortProposalAcceptForm
from ratings.models import (
    Answer,
    Cohort,
    CohortProposal,
    Criterion,
    Pair,
    Rater,
    ScoreRun,
    Study,
    StudyGrant,
    StudyInvite,
    Vote,
)
from ratings.studies import criteria_ensure_defaults


class WrittenInAnyLanguage:
    """Ask for a required text in any one language, not always in the site's default.

    modeltranslation requires the default language's column of a required field; a study
    written in Spanish has its texts in Spanish only, and raters read them in Spanish where
    their own language has none (ratings/texts.py). The forms check that one is written.
    """

    def patch_translation_field(self, db_field, field, request, **kwargs) -> None:
        super().patch_translation_field(db_field, field, request, **kwargs)
        if getattr(db_field, "translated_field", None) is not None:
            field.required = False


def texts_written_check(form: forms.BaseForm, *, model: type, language: str) -> None:
    """Add an error to `form` for each required text left empty in every language.

    The error goes beside the `language` column, the one the text is best written in.
    """
    for name in translator.get_options_for_model(model).fields:
        if model._meta.get_field(name).blank:
            continue
        columns = [build_localized_fieldname(name, code) for code, _ in settings.TEXT_LANGUAGES]
        if any(column in form.fields for column in columns) and not any(
            form.cleaned_data.get(column) for column in columns
        ):
            form.add_error(
                build_localized_fieldname(name, language), "Write this in one language at least."
            )


class StudyTextsForm(forms.ModelForm):
    def clean(self) -> dict:
        cleaned = super().clean()
        language = cleaned.get("language") or settings.LANGUAGE_CODE
        texts_written_check(self, model=Study, language=language)
        return cleaned


class CriterionFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        # The study as posted: its language may change in the same save.
        language = self.instance.language
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or (
                not form.has_changed() and form.instance.pk is None
            ):
                continue  # an empty extra row
            if self.can_delete and self._should_delete_form(form):
                continue
            texts_written_check(form, model=Criterion, language=language)


class CohortTextsForm(forms.ModelForm):
    def clean(self) -> dict:
        cleaned = super().clean()
        texts_written_check(self, model=Cohort, language=settings.LANGUAGE_CODE)
        return cleaned


class CriterionInline(WrittenInAnyLanguage, TranslationTabularInline):
    model = Criterion
    formset = CriterionFormSet
    extra = 0


def _invite_url(request, invite: StudyInvite) -> str:
    return request.build_absolute_uri(reverse("ratings:invite", args=[invite.token]))


class StudyInviteInline(admin.TabularInline):
    """Invite links to the study: add a row and save to make one; its link shows once saved."""

    model = StudyInvite
    extra = 0
    fields = ["link", "max_uses", "expires_at", "uses", "created_by", "created_at"]
    readonly_fields = ["link", "uses", "created_by", "created_at"]

    def get_formset(self, request, obj=None, **kwargs):
        # The admin makes its inline instances per request, so keeping the request is safe.
        self.request = request
        formset = super().get_formset(request, obj, **kwargs)

        class InviteFormSet(formset):
            def save_new(self, form, commit=True):
                form.instance.created_by = request.user
                return super().save_new(form, commit)

        return InviteFormSet

    @admin.display(description="invite link")
    def link(self, invite: StudyInvite) -> str:
        if invite.pk is None:
            return "(shown once saved)"
        return format_html('<a href="{0}">{0}</a>', _invite_url(self.request, invite))


@admin.action(description="Create an invite link")
def study_invite_create(modeladmin, request, queryset) -> None:
    for study in queryset:
        invite = services.invite_create(study=study, created_by=request.user)
        modeladmin.message_user(
            request,
            format_html(
                'Invite link to {}: <a href="{}">{}</a> (no limit; set one under the study\'s '
                "invites)",
                study.name,
                _invite_url(request, invite),
                _invite_url(request, invite),
            ),
            messages.SUCCESS,
        )


class StudyGrantInline(admin.TabularInline):
    """Researchers who may read this study's scores, exports and API."""

    model = StudyGrant
    extra = 0
    fields = ["user", "granted_by", "created_at"]
    readonly_fields = ["granted_by", "created_at"]
    autocomplete_fields = ["user"]
    verbose_name = "researcher access"
    verbose_name_plural = "researcher access"


@admin.register(Study)
class StudyAdmin(WrittenInAnyLanguage, TranslationAdmin):
    """A study; its texts raters read (name, consent, questions, completion) in each language,
    side by side, each falling back to the study's own language's where left empty."""

    form = StudyTextsForm
    list_display = ["name", "slug", "language", "active", "raters_per_pair", "min_cohort_size"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["cohorts", "variants"]
    inlines = [CriterionInline, StudyInviteInline, StudyGrantInline]
    actions = [study_invite_create]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "slug",
                    "language",
                    "description",
                    "active",
                    "cohorts",
                    "variants",
                ]
            },
        ),
        (
            "Raters and assignment",
            {
                "fields": [
                    "consent_text",
                    "ask_demographics",
                    "demographics_intro",
                    "age_band_question",
                    "languages_question",
                    "years_lived_question",
                    "raters_per_pair",
                    "pairs_per_rater",
                    "outgroup_share",
                    "pair_every_two_variants",
                ]
            },
        ),
        (
            "Quality checks",
            {"fields": ["attention_check_rate", "max_failed_checks", "min_seconds_per_pair"]},
        ),
        (
            "Panels and completion",
            {
                "fields": [
                    "panel_rater_param",
                    "panel_study_param",
                    "panel_session_param",
                    "completion_text",
                    "completion_code",
                    "completion_url",
                ]
            },
        ),
        (
            "Scores (SCORING.md)",
            {
                "description": "k hides cohorts with fewer raters; the thresholds decide the "
                "split and contested labels (SCORING.md section 8a).",
                "fields": [
                    "min_cohort_size",
                    "split_min_share",
                    "split_max_p",
                    "contested_max_top_share",
                    "score_permutations",
                    "score_bootstrap",
                ],
            },
        ),
    ]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        criteria_ensure_defaults(study=form.instance)

    def save_formset(self, request, form, formset, change) -> None:
        # Record who granted a researcher access.
        if formset.model is StudyGrant:
            for grant in formset.save(commit=False):
                if grant.granted_by_id is None:
                    grant.granted_by = request.user
                grant.save()
            for grant in formset.deleted_objects:
                grant.delete()
            return
        super().save_formset(request, form, formset, change)


@admin.register(Cohort)
class CohortAdmin(WrittenInAnyLanguage, TranslationAdmin):
    """A cohort; its name in any one language at least (each study reads it in its own)."""

    form = CohortTextsForm
    list_display = ["path", "name", "depth"]
    search_fields = ["path", "name"]


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    # A panel id is personal to the panel: findable by exact search, never listed or shown.
    list_display = ["id", "user", "from_panel", "created_at"]
    exclude = ["panel_id"]
    filter_horizontal = ["cohorts"]
    search_fields = ["user__username", "user__email", "=panel_id"]

    @admin.display(boolean=True, description="from a panel")
    def from_panel(self, rater: Rater) -> bool:
        return rater.panel_id is not None


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "prompt", "seed", "variant_a", "variant_b"]
    list_filter = ["study"]
    raw_id_fields = ["prompt", "image_a", "image_b"]


class AnswerInline(admin.TabularInline):
    model = Answer
    extra = 0
    readonly_fields = ["criterion", "choice"]
    can_delete = False


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "pair", "rater", "shown_left", "created_at"]
    list_filter = ["study"]
    readonly_fields = [
        "study",
        "pair",
        "rater",
        "shown_left",
        "cohort_paths",
        "time_on_task_ms",
        "comment",
    ]
    inlines = [AnswerInline]

    def has_add_permission(self, request) -> bool:
        return False  # votes come from raters, never from an admin form


@admin.register(CohortProposal)
class CohortProposalAdmin(admin.ModelAdmin):
    """Cultures raters named because the study did not list theirs; admins accept or reject."""

    list_display = ["text", "study", "status", "cohort", "created_at", "decided_at"]
    list_filter = ["status", "study"]
    search_fields = ["text"]
    readonly_fields = ["study", "rater", "text", "status", "cohort", "created_at", "decided_at"]
    actions = ["accept_as_cohort", "reject"]

    def has_add_permission(self, request) -> bool:
        return False  # proposals come from raters

    @admin.action(description="Accept as new cohort")
    def accept_as_cohort(self, request, queryset):
        """Ask where each proposal goes in the hierarchy, then make it a cohort of its study."""
        pending = queryset.filter(status=CohortProposal.Status.PENDING).select_related("study")
        proposals = list(pending)
        if not proposals:
            self.message_user(request, "None of these proposals is pending.", messages.WARNING)
            return None
        forms = [
            CohortProposalAcceptForm(
                request.POST if "apply" in request.POST else None,
                prefix=f"proposal-{proposal.pk}",
                initial={"path": slugify(proposal.text), "name": proposal.text[:120]},
            )
            for proposal in proposals
        ]
        if "apply" in request.POST and all(form.is_valid() for form in forms):
            for proposal, form in zip(proposals, forms, strict=True):
                try:
                    cohort = services.cohort_proposal_accept(
                        proposal=proposal,
                        path=form.cleaned_data["path"],
                        name=form.cleaned_data["name"],
                    )
                except services.ProposalDecided:
                    self.message_user(
                        request, f"“{proposal.text}” was decided meanwhile.", messages.WARNING
                    )
                    continue
                self.message_user(
                    request,
                    f"“{proposal.text}” is now cohort {cohort.path} of {proposal.study}.",
                    messages.SUCCESS,
                )
            return None
        return TemplateResponse(
            request,
            "admin/ratings/cohortproposal/accept.html",
            {
                **self.admin_site.each_context(request),
                "title": "Accept as new cohort",
                "opts": self.model._meta,
                "rows": list(zip(proposals, forms, strict=True)),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "study_paths": sorted(
                    Cohort.objects.filter(studies__in={proposal.study_id for proposal in proposals})
                    .values_list("path", flat=True)
                    .distinct()
                ),
            },
        )

    @admin.action(description="Reject")
    def reject(self, request, queryset) -> None:
        rejected = sum(
            services.cohort_proposal_reject(proposal=proposal)
            for proposal in queryset.filter(status=CohortProposal.Status.PENDING)
        )
        self.message_user(request, f"Rejected {rejected} proposal(s).", messages.SUCCESS)


@admin.register(ScoreRun)
class ScoreRunAdmin(admin.ModelAdmin):
    """Score computations, read-only: when, over which votes, and any error."""

    list_display = ["study", "status", "started_at", "computed_at", "votes_covered"]
    list_filter = ["status", "study"]
    readonly_fields = [field.name for field in ScoreRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
