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


def test_every_string_of_the_rater_interface_has_its_spanish(tmp_path):
    # What `makemessages` would extract from the code today, compared with the catalogue: a
    # string added without its Spanish (or with only gettext's fuzzy guess) fails here, not in
    # front of a rater. Run on a copy, so the committed catalogue is left as it is.
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "polyphony"
    copy.mkdir()
    shutil.copy(root / "manage.py", copy)
    for folder in ("webapp", "ratings", "generation", "templates", "locale"):
        shutil.copytree(root / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "DEBUG": "true", "POLYPHONY_VAR_DIR": str(tmp_path / "var")}
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "es", "--no-obsolete"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    catalogue = copy / "locale/es/LC_MESSAGES/django.po"
    missing = []
    for flag in ("--untranslated", "--only-fuzzy"):
        listed = subprocess.run(
            ["msgattrib", flag, "--no-wrap", str(catalogue)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        missing += [
            line
            for line in listed.splitlines()
            if line.startswith('msgid "') and line != 'msgid ""'
        ]
    assert not missing, "\n".join(missing)
