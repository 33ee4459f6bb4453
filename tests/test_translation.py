"""Rater pages speak Spanish to a browser that asks for it, and switch on request."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse
from django.utils import translation

from ratings.models import DEFAULT_CRITERIA


def test_consent_page_is_in_spanish_for_a_spanish_browser(study, outsider):
    client = Client(HTTP_ACCEPT_LANGUAGE="es")
    client.force_login(outsider)
    page = client.get(reverse("ratings:consent", args=[study.slug])).content.decode()
    assert 'lang="es"' in page
    assert "may be offensive" not in page
    assert "ofensiv" in page  # the warning about offensive images, in Spanish


def test_default_questions_and_answers_are_translated():
    with translation.override("es"):
        questions = [translation.gettext(question) for _, question in DEFAULT_CRITERIA]
        answers = [translation.gettext(text) for text in ("Image 1", "Both equally")]
    assert all(q != english for q, (_, english) in zip(questions, DEFAULT_CRITERIA, strict=True))
    assert answers == ["Imagen 1", "Ambas por igual"]


def test_language_switch_sets_spanish_for_later_pages(study, outsider):
    client = Client()
    client.force_login(outsider)
    client.post(reverse("set_language"), {"language": "es", "next": "/"})
    page = client.get(reverse("ratings:consent", args=[study.slug])).content.decode()
    assert 'lang="es"' in page
