"""Rater privacy in exports: pseudonyms, cohort labels that meet k, suppressed cohort cells.

Pure code: no Django import, so the rules can be tested on their own (tests/test_privacy.py,
tests/test_suppression.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence

from ratings.cohorts import cohort_path_contains, cohort_path_parent


def rater_pseudonym(*, salt: str, rater_id: int) -> str:
    """Return a study-salted pseudonym for a rater; it cannot be reversed to the rater id."""
    digest = hmac.new(salt.encode(), f"rater:{rater_id}".encode(), hashlib.sha256)
    return "r_" + digest.hexdigest()[:20]


def cohort_labels_release(
    labels_by_rater: Mapping[Hashable, Iterable[str]], *, k: int, protect_unlabelled: bool = False
) -> dict[str, str | None]:
    """Map each cohort label to the label an export may show for it, or None to drop it.

    A label held by fewer than k raters is rolled up into its parent, deepest labels first,
    until every label shown is held by at least k raters. Rolling up whole labels (never only
    some of their raters) means no released group can be told apart as parent minus children.

    With `protect_unlabelled`, the raters left with no label at all are a group too: anyone who
    knows the study's cohorts can name the label they lost when they are the only ones missing.
    While that group holds between 1 and k - 1 raters, the smallest label that some rater holds
    as their only one is dropped as well (complementary suppression), so the unlabelled rows
    mix at least k raters of more than one cohort, or nothing else is left to show.
    """
    held = {rater: set(labels) for rater, labels in labels_by_rater.items()}
    release: dict[str, str | None] = {label: label for labels in held.values() for label in labels}
    while True:
        counts = Counter(label for labels in held.values() for label in labels)
        small = [label for label, count in counts.items() if count < k]
        if not small:
            if protect_unlabelled:
                _unlabelled_protect(held, release, k=k)
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


def _unlabelled_protect(
    held: dict[Hashable, set[str]], release: dict[str, str | None], *, k: int
) -> None:
    """Drop sole labels, smallest first, until the raters shown with no label are 0 or >= k."""
    while True:
        unlabelled = sum(1 for labels in held.values() if not labels)
        if not 0 < unlabelled < k:
            return
        counts = Counter(label for labels in held.values() for label in labels)
        # Dropping a label grows the unlabelled group only through raters who hold nothing else.
        sole = {next(iter(labels)) for labels in held.values() if len(labels) == 1}
        if not sole:
            return
        dropped = min(sole, key=lambda label: (counts[label], label.count(":"), label))
        for original, shown in release.items():
            if shown == dropped:
                release[original] = None
        for labels in held.values():
            labels.discard(dropped)


# Aggregate tables (scores, split report): one row per cohort at every level of the hierarchy,
# where a parent's row counts every rater of its children. A row below k is suppressed, and so
# is, by complementary suppression, whatever else it takes to keep it from being derived.

SUPPRESSED_BELOW_K = "below_k"
SUPPRESSED_COMPLEMENTARY = "complementary"
# The parent of the top-level cultures: the study as a whole, whose totals other exports and
# the dataset card give away, so a lone hidden culture is as exposed as a lone hidden child.
STUDY_TOTAL = ""


def _present_parent(path: str, present: set[str]) -> str:
    """Return the nearest ancestor of `path` that has a row, or STUDY_TOTAL."""
    parent = cohort_path_parent(path)
    while parent is not None and parent not in present:
        parent = cohort_path_parent(parent)
    return STUDY_TOTAL if parent is None else parent


def cohort_cells_suppress(
    n_raters: Mapping[str, int],
    *,
    k: int,
    force: Mapping[str, str] | None = None,
    total: int | None = None,
) -> dict[str, str]:
    """Return the cohort rows of one table slice to suppress, each with why.

    `n_raters` gives the raters of each cohort row (a parent's row includes its children's
    raters); `force` names rows that must be hidden anyway (e.g. hidden in another slice of the
    same export) and why; `total` is the raters of the whole study, or None to take the sum of
    the top-level rows. The result satisfies, for raters who each hold one label path:

    - every row shown has at least k raters, and every row below a hidden row is hidden;
    - for the study total and every row shown, the raters it has that no shown child has
      (its own raters and its hidden children's) number 0 or at least k.

    The second rule is the complementary suppression: the only counts a reader can compute as
    parent minus shown children belong to a group of at least k raters, so no hidden row, and
    no share computed from one, can be recovered. Where it fails, the smallest shown child is
    hidden too (with its subtree), repeatedly; hiding every child always ends it, since a shown
    parent has at least k raters. Raters in two sibling cohorts make children add up to more
    than their parent; the difference then only grows as children are hidden, which errs on
    the side of hiding.
    """
    present = set(n_raters)
    children: dict[str, list[str]] = defaultdict(list)
    for path in present:
        children[_present_parent(path, present)].append(path)
    hidden: dict[str, str] = {}

    def hide(path: str, reason: str) -> None:
        stack = [path]
        while stack:
            current = stack.pop()
            hidden.setdefault(current, reason)
            stack.extend(children[current])

    for path, reason in (force or {}).items():
        for candidate in present:
            if cohort_path_contains(path, candidate):
                hide(candidate, reason)
    for path in sorted(present):
        if n_raters[path] < k:
            hide(path, SUPPRESSED_BELOW_K)

    totals = {**n_raters, STUDY_TOTAL: total}
    if total is None:
        totals[STUDY_TOTAL] = sum(n_raters[path] for path in children[STUDY_TOTAL])
    for parent in [STUDY_TOTAL, *sorted(present, key=lambda path: (path.count(":"), path))]:
        if parent in hidden:
            continue
        while True:
            shown = [child for child in children[parent] if child not in hidden]
            uncovered = totals[parent] - sum(n_raters[child] for child in shown)
            hidden_raters = any(
                n_raters[child] > 0 for child in children[parent] if child in hidden
            )
            if not shown or uncovered >= k or (uncovered <= 0 and not hidden_raters):
                break
            hide(min(shown, key=lambda child: (n_raters[child], child)), SUPPRESSED_COMPLEMENTARY)
    return hidden


def cohort_tables_suppress(slices: Sequence[Mapping[str, int]], *, k: int) -> dict[str, str]:
    """Return one set of cohort rows to hide in every slice, each slice safe on its own terms.

    An export holds several slices over the same cohorts (one per criterion, the coherence
    table); a row hidden in one slice but shown in another would reopen what the first slice's
    complementary suppression closed, so the hidden set is grown until no slice asks for more.
    """
    hidden: dict[str, str] = {}
    while True:
        grown = dict(hidden)
        for slice_ in slices:
            for path, reason in cohort_cells_suppress(slice_, k=k, force=hidden).items():
                grown.setdefault(path, reason)
        if grown.keys() == hidden.keys():
            return grown
        hidden = grown
