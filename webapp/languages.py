"""The rater interface's languages: those with a compiled catalogue under locale/.

A third language is one translation file: `locale/xx/LC_MESSAGES/django.po`, compiled to
`django.mo` beside it. Its name in the language menu is the language's own (Django's
LANG_INFO). A study's own texts are translated only in the languages that have columns for
them (settings.TEXT_LANGUAGES); in another, a rater reads them in the study's language.
"""

from __future__ import annotations

from pathlib import Path

from django.conf.locale import LANG_INFO


def catalogue_languages(locale_dir: Path, *, known: set[str]) -> list[tuple[str, str]]:
    """Return (code, name in that language) for each compiled catalogue not in `known`."""
    found = []
    for catalogue in sorted(locale_dir.glob("*/LC_MESSAGES/django.mo")):
        code = catalogue.parent.parent.name.replace("_", "-").lower()
        if code in known:
            continue
        info = LANG_INFO.get(code) or LANG_INFO.get(code.split("-")[0]) or {}
        found.append((code, info.get("name_local", code)))
    return found
