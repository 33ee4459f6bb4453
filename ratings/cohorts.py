"""Cohort paths: `culture[:subculture[:period]]`, pure string rules with no Django import."""

from __future__ import annotations

import re

MAX_DEPTH = 3
SEPARATOR = ":"
SEGMENT = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
PATH_PATTERN = re.compile(rf"^{SEGMENT}(?::{SEGMENT}){{0,{MAX_DEPTH - 1}}}$")


class CohortPathError(ValueError):
    """A cohort path that does not follow `culture[:subculture[:period]]`."""


def cohort_path_normalize(raw: str) -> str:
    """Return the canonical form of a cohort path, or raise CohortPathError saying why."""
    path = raw.strip().lower()
    if not path:
        raise CohortPathError("A cohort path cannot be empty.")
    if not PATH_PATTERN.match(path):
        raise CohortPathError(
            f"{raw!r} is not a cohort path: use culture[:subculture[:period]], each part "
            "lower-case letters, digits, '-' or '_' (for example india:tamil:contemporary)."
        )
    return path


def cohort_path_ancestors(path: str) -> list[str]:
    """Return the path and every ancestor, root first: `a:b` gives [`a`, `a:b`]."""
    parts = path.split(SEPARATOR)
    return [SEPARATOR.join(parts[: depth + 1]) for depth in range(len(parts))]


def cohort_path_parent(path: str) -> str | None:
    """Return the parent path, or None for a culture at the root."""
    head, sep, _ = path.rpartition(SEPARATOR)
    return head if sep else None


def cohort_path_contains(ancestor: str, path: str) -> bool:
    """Tell whether `path` is `ancestor` or lies below it."""
    return path == ancestor or path.startswith(ancestor + SEPARATOR)
