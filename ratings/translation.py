"""The study's own texts in each rater language (django-modeltranslation).

Each field below gains a column per language (`consent_text_es`, …); the field itself keeps the
text as first written. A text missing in a rater's language shows in the study's own language,
then the site's (ratings/texts.py). Hand-written SQL reads them through `ratings.sql.localized`.
"""

from modeltranslation.translator import TranslationOptions, register

from ratings.models import Cohort, Criterion, Study
from ratings.texts import StudyTextDescriptor


@register(Study)
class StudyTranslation(TranslationOptions):
    fields = (
        "name",
        "consent_text",
        "completion_text",
        "demographics_intro",
        "age_band_question",
        "languages_question",
        "years_lived_question",
    )


# A study knows its own language, so `study.consent_text` falls back to it wherever it is read.
for _field in StudyTranslation.fields:
    setattr(Study, _field, StudyTextDescriptor.replacing(getattr(Study, _field)))


@register(Criterion)
class CriterionTranslation(TranslationOptions):
    fields = ("question",)


@register(Cohort)
class CohortTranslation(TranslationOptions):
    fields = ("name",)
