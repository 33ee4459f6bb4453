"""The study's own texts in each rater language (django-modeltranslation).

Each field below gains a column per language (`consent_text_es`, …); the field itself keeps the
text as the study wrote it, in the default language, and is what a missing translation falls
back to. Hand-written SQL reads them through `ratings.sql.localized`.
"""

from modeltranslation.translator import TranslationOptions, register

from ratings.models import Cohort, Criterion, Study


@register(Study)
class StudyTranslation(TranslationOptions):
    fields = ("name", "consent_text", "completion_text")


@register(Criterion)
class CriterionTranslation(TranslationOptions):
    fields = ("question",)


@register(Cohort)
class CohortTranslation(TranslationOptions):
    fields = ("name",)
