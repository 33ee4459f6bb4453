"""Selectors of entry: where a rater stands in a study's steps."""

from __future__ import annotations

from ratings.cohorts import cohort_path_contains
from ratings.models import Rater, Study


def rater_has_study_cohort(*, study: Study, rater: Rater) -> bool:
    """Tell whether the rater holds one of the study's cohorts, or a cohort below one.

    A rater of india:tamil is Indian: in a study of India (without Tamil) they rate India's
    pairs. A proposal is not a cohort yet.
    """
    study_paths = list(study.cohorts.values_list("path", flat=True))
    return any(
        cohort_path_contains(study_path, path)
        for path in rater.cohort_paths()
        for study_path in study_paths
    )
