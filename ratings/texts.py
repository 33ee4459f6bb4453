"""Which language's text a rater reads: their own, else the study's, else the site's.

A study is written in its own language (`Study.language`), translated column by column with
django-modeltranslation (`consent_text_es`, …). A text missing in the rater's language shows in
the study's language, then in the site's default, then as first written (the field's own
column). Hand-written SQL follows the same order through `ratings.sql.localized`.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Model
from django.utils.translation import get_language
from modeltranslation.fields import TranslationFieldDescriptor
from modeltranslation.utils import build_localized_fieldname, fallbacks_enabled


def language_active() -> str:
    """Return the active language as a code of settings.LANGUAGES (the default if another)."""
    language = (get_language() or settings.LANGUAGE_CODE).split("-")[0]
    known = {code for code, _ in settings.LANGUAGES}
    return language if language in known else settings.LANGUAGE_CODE


def text_language_codes() -> list[str]:
    """Return the languages a study's texts have columns for (settings.TEXT_LANGUAGES).

    The interface may speak more (settings.LANGUAGES: any language with a catalogue); in
    those, a study's texts show in the study's own language.
    """
    return [code for code, _ in settings.TEXT_LANGUAGES]


def text_languages(*, study_language: str) -> list[str]:
    """Return the languages a rater's text is looked for in, in order."""
    order = [language_active(), study_language, settings.LANGUAGE_CODE]
    columns = set(text_language_codes())
    return [code for code in dict.fromkeys(order) if code in columns]


def text_localized(*, instance: Model, field: str, study_language: str) -> str:
    """Return a translated field of `instance` as a rater of a study written in `study_language`
    reads it."""
    for language in text_languages(study_language=study_language):
        value = getattr(instance, build_localized_fieldname(field, language), None)
        if value:
            return value
    # The field's own column, as loaded: modeltranslation keeps it in the instance's __dict__
    # (its descriptor answers in the active language instead).
    return instance.__dict__.get(field) or ""


class StudyTextDescriptor(TranslationFieldDescriptor):
    """A study's translated field, falling back to the study's own language first.

    Installed over modeltranslation's descriptor (ratings/translation.py), so that every
    `study.consent_text` a template reads follows the order above.
    """

    @classmethod
    def replacing(cls, descriptor: TranslationFieldDescriptor) -> StudyTextDescriptor:
        return cls(
            descriptor.field,
            fallback_languages=descriptor.fallback_languages,
            fallback_value=descriptor.fallback_value,
            fallback_undefined=descriptor.fallback_undefined,
        )

    def __get__(self, instance, owner):
        if instance is None or not fallbacks_enabled():
            return super().__get__(instance, owner)
        return text_localized(
            instance=instance, field=self.field.name, study_language=instance.language
        )
