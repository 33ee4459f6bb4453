"""Services that set studies up: a study with its default criteria, and the cohorts it needs."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import translation
from modeltranslation.utils import auto_populate

from ratings.cohorts import cohort_path_ancestors, cohort_path_normalize
from ratings.models import DEFAULT_CRITERIA, Cohort, Criterion, Study


def study_create(
    *, name: str, slug: str, cohort_paths: Iterable[str] = (), **fields: object
) -> Study:
    """Create a study with the default criteria and the given cohorts (made if missing).

    Its texts are in its own language (`language`, else the default), whatever language the
    request is in, and in no other; translations are added beside them (`name_es`, …).
    """
    language = str(fields.get("language") or settings.LANGUAGE_CODE)
    # Without auto-population, a text is stored in the one language it was written in, not
    # copied to the default language's column too.
    with transaction.atomic(), translation.override(language), auto_populate(False):
        study = Study.objects.create(name=name, slug=slug, **fields)
        criteria_ensure_defaults(study=study)
        study.cohorts.set([cohort_ensure(path=path) for path in cohort_paths])
    return study


def criteria_ensure_defaults(*, study: Study) -> None:
    """Give a study with no criteria the four default questions."""
    if study.criteria.exists():
        return
    with translation.override(settings.LANGUAGE_CODE):  # the texts as written: the default's
        _criteria_create(study)


def _criteria_create(study: Study) -> None:
    Criterion.objects.bulk_create(
        Criterion(study=study, key=key, question=question, position=position)
        for position, (key, question) in enumerate(DEFAULT_CRITERIA)
    )


def cohort_ensure(*, path: str, name: str = "") -> Cohort:
    """Return the cohort at `path`, creating it and any missing ancestors."""
    path = cohort_path_normalize(path)
    cohort = None
    for ancestor in cohort_path_ancestors(path):
        default_name = ancestor.rsplit(":", 1)[-1].replace("_", " ").replace("-", " ").title()
        with translation.override(settings.LANGUAGE_CODE):  # the name as written
            cohort, _ = Cohort.objects.get_or_create(
                path=ancestor,
                defaults={"name": name if ancestor == path and name else default_name},
            )
    assert cohort is not None
    return cohort
