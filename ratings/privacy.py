"""Rater privacy in exports: pseudonyms and cohort labels that meet k. Pure code."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

from ratings.cohorts import cohort_path_parent


def rater_pseudonym(*, salt: str, rater_id: int) -> str:
    """Return a study-salted pseudonym for a rater; it cannot be reversed to the rater id."""
    digest = hmac.new(salt.encode(), f"rater:{rater_id}".encode(), hashlib.sha256)
    return "r_" + digest.hexdigest()[:20]


def cohort_labels_release(
    labels_by_rater: Mapping[Hashable, Iterable[str]], *, k: int
) -> dict[str, str | None]:
    """Map each cohort label to the label an export may show for it, or None to drop it.

    A label held by fewer than k raters is rolled up into its parent, deepest labels first,
    until every label shown is held by at least k raters. Rolling up whole labels (never only
    some of their raters) means no released group can be told apart as parent minus children.
    """
    held = {rater: set(labels) for rater, labels in labels_by_rater.items()}
    release: dict[str, str | None] = {label: label for labels in held.values() for label in labels}
    while True:
        counts = Counter(label for labels in held.values() for label in labels)
        small = [label for label, count in counts.items() if count < k]
        if not small:
            return release
        deepest = max(label.count(":") for label in small)
        moving = {
            label: cohort_path_parent(label) for label in small if label.count(":") == deepest
        }
        for original, shown in release.items():
            if shown in moving:
                release[original] = moving[shown]
        for rater, labels in held.items():
            held[rater] = {moving.get(label, label) for label in labels} - {None}
