"""Stream a study's votes as CSV rows in constant memory."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from ratings.models import Answer, AssignmentKind, Participation, Study, Vote
from ratings.privacy import cohort_labels_release, rater_pseudonym

VOTE_LONG_COLUMNS = (
    "vote_id",
    "study",
    "pair_id",
    "prompt",
    "prompt_cohort",
    "category",
    "seed",
    "variant_a",
    "variant_b",
    "fingerprint_a",
    "fingerprint_b",
    "rater",
    "rater_cohorts",
    "criterion",
    "choice",
    "shown_left",
    "time_on_task_ms",
    "created_at",
    # Flagged raters' votes stay in the raw data with the flag; scores leave them out.
    "rater_flagged",
    # "identical" or "repeat" for an attention check's vote, empty for a regular pair.
    "attention_check",
)


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def votes_long_rows(*, study: Study) -> Iterator[tuple]:
    """Yield one row per vote and criterion, raters pseudonymous, cohorts only where they meet k."""
    labels_by_rater: dict[int, set[str]] = {}
    for rater_id, paths in (
        Vote.objects.filter(study=study)
        .values_list("rater_id", "cohort_paths")
        .iterator(chunk_size=5000)
    ):
        labels_by_rater.setdefault(rater_id, set()).update(paths)
    release = cohort_labels_release(labels_by_rater, k=study.min_cohort_size)
    flagged_raters = set(
        Participation.objects.filter(study=study, flagged=True).values_list("rater_id", flat=True)
    )

    answers = (
        Answer.objects.filter(vote__study=study)
        .order_by("vote_id", "criterion__position")
        .values_list(
            "vote_id",
            "vote__pair_id",
            "vote__pair__prompt__text",
            "vote__pair__prompt__cohort__path",
            "vote__pair__prompt__category",
            "vote__pair__seed",
            "vote__pair__variant_a__name",
            "vote__pair__variant_b__name",
            "vote__pair__image_a__fingerprint",
            "vote__pair__image_b__fingerprint",
            "vote__rater_id",
            "vote__cohort_paths",
            "criterion__key",
            "choice",
            "vote__shown_left",
            "vote__time_on_task_ms",
            "vote__created_at",
            "vote__kind",
        )
    )
    for row in answers.iterator(chunk_size=5000):
        (
            vote_id,
            pair_id,
            prompt,
            prompt_cohort,
            category,
            seed,
            variant_a,
            variant_b,
            fingerprint_a,
            fingerprint_b,
            rater_id,
            cohort_paths,
            criterion,
            choice,
            shown_left,
            time_on_task_ms,
            created_at,
            kind,
        ) = row
        shown_cohorts = sorted({release[p] for p in cohort_paths if release.get(p)})
        yield (
            vote_id,
            study.slug,
            pair_id,
            prompt,
            prompt_cohort,
            category,
            seed,
            variant_a,
            variant_b,
            fingerprint_a,
            fingerprint_b,
            rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_id),
            "|".join(shown_cohorts),
            criterion,
            choice,
            shown_left,
            time_on_task_ms,
            created_at.isoformat(),
            "true" if rater_id in flagged_raters else "false",
            "" if kind == AssignmentKind.PAIR else kind,
        )


def votes_long_csv(*, study: Study) -> Iterator[str]:
    """Yield the long-form vote export as CSV text, header first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(VOTE_LONG_COLUMNS)
    for row in votes_long_rows(study=study):
        yield writer.writerow(row)
