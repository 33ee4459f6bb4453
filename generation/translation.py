"""A prompt in each rater language (django-modeltranslation); `text` stays the rendered one."""

from modeltranslation.translator import TranslationOptions, register

from generation.models import Prompt


@register(Prompt)
class PromptTranslation(TranslationOptions):
    fields = ("text",)
