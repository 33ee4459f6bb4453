"""Coverage: the votes each pair has from each cohort, kept as votes are cast."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from ratings.cohorts import cohort_path_ancestors, cohort_path_contains
from ratings.models import Cohort, Pair, PairCoverage, Study, Vote
from ratings.sql import db_tables, sql_cursor, sql_list


def _coverage_paths(*, prompt_path: str, vote_paths: Iterable[str]) -> set[str]:
    # Every cohort that holds one of the vote's labels and can count toward the pair's prompt.
    return {
        ancestor
        for path in vote_paths
        for ancestor in cohort_path_ancestors(path)
        if cohort_path_contains(ancestor, prompt_path)
        or cohort_path_contains(prompt_path, ancestor)
    }


def coverage_count(
    *, study_id: int, pair_id: int, target: int, prompt_path: str, vote_paths: Iterable[str]
) -> tuple[str, dict]:
    """Return the statement and parameters that count one regular vote in its pair's coverage.

    The vote adds one on the row of every cohort holding one of its labels, ancestors included,
    that is related to the prompt's cohort (made if missing); a vote with no such label is an
    out-group vote and adds one to `outgroup_votes` on the row of the prompt's root culture.
    Rows are taken in path order, so concurrent votes on a pair lock them in the same order.

    A row never counts past the target. A vote on a reservation that timed out while others
    filled the pair, or a sub-culture's vote on a pair its culture had filled (a Tamil vote
    counts in India too, and Tamil has a target of its own), is stored and scored like any
    other; it only fills no place that was not open. The rows count places filled, which is
    what assignment reads them for.
    """
    paths = _coverage_paths(prompt_path=prompt_path, vote_paths=vote_paths)
    in_group = 1 if paths else 0
    if not paths:
        paths = {cohort_path_ancestors(prompt_path)[0]}
    t = db_tables()
    params = {
        "study": study_id,
        "pair": pair_id,
        "in_group": in_group,
        "out_group": 1 - in_group,
        "target": target,
    }
    paths_in = sql_list("path", sorted(paths), params)
    sql = f"""
        INSERT INTO {t["coverage"]} AS coverage
            (study_id, pair_id, cohort_id, votes, outgroup_votes)
        SELECT %(study)s, %(pair)s, cohort.id, %(in_group)s, %(out_group)s
        FROM {t["cohort"]} cohort WHERE cohort.path IN {paths_in} ORDER BY cohort.path
        ON CONFLICT (pair_id, cohort_id) DO UPDATE SET
            votes = CASE WHEN coverage.votes < %(target)s
                THEN coverage.votes + excluded.votes ELSE coverage.votes END,
            outgroup_votes = CASE WHEN coverage.outgroup_votes < %(target)s
                THEN coverage.outgroup_votes + excluded.outgroup_votes
                ELSE coverage.outgroup_votes END
    """
    return sql, params


def pair_coverage_record(*, vote: Vote) -> None:
    """Count a regular vote in its pair's coverage, making the rows it needs (up to target).

    For votes stored outside vote_submit, which counts its own in the same statement; call it
    in the vote's transaction, so a vote and its count are stored together or not at all.
    """
    prompt_path, target = (
        Pair.objects.filter(pk=vote.pair_id)
        .values_list("prompt__cohort__path", "study__raters_per_pair")
        .get()
    )
    sql, params = coverage_count(
        study_id=vote.study_id,
        pair_id=vote.pair_id,
        target=target,
        prompt_path=prompt_path,
        vote_paths=vote.cohort_paths,
    )
    with sql_cursor() as cursor:
        cursor.execute(sql, params)


def pair_coverage_create(*, pairs: Iterable[Pair]) -> None:
    """Make the coverage rows of newly formed regular pairs; rows already there are kept.

    A pair gets a row for its prompt's cohort, each ancestor, and each of its study's cohorts
    below the prompt's, so every rater the pair is in-group for finds it among their rows.
    """
    pair_ids = [pair.pk for pair in pairs if not pair.is_attention_check]
    if not pair_ids:
        return
    formed = list(
        Pair.objects.filter(pk__in=pair_ids).values_list("pk", "study_id", "prompt__cohort__path")
    )
    study_paths: dict[int, list[str]] = {}
    for study_id, path in Study.cohorts.through.objects.filter(
        study_id__in={study_id for _, study_id, _ in formed}
    ).values_list("study_id", "cohort__path"):
        study_paths.setdefault(study_id, []).append(path)
    rows = []
    for pair_id, study_id, prompt_path in formed:
        below = [
            path
            for path in study_paths.get(study_id, ())
            if cohort_path_contains(prompt_path, path)
        ]
        for path in {*cohort_path_ancestors(prompt_path), *below}:
            rows.append((pair_id, study_id, path))
    cohort_ids = dict(
        Cohort.objects.filter(path__in={path for _, _, path in rows}).values_list("path", "pk")
    )
    PairCoverage.objects.bulk_create(
        [
            PairCoverage(pair_id=pair_id, study_id=study_id, cohort_id=cohort_ids[path])
            for pair_id, study_id, path in rows
        ],
        ignore_conflicts=True,
    )


def pair_coverage_backfill(*, study: Study, cohort: Cohort) -> int:
    """Give the study's pairs rows for a cohort added to the study after they were formed.

    Only pairs whose prompt targets an ancestor of the cohort lack them; others got the row
    when formed. Return the number of rows made.
    """
    ancestors = cohort_path_ancestors(cohort.path)[:-1]
    if not ancestors:
        return 0
    ancestor_ids = list(Cohort.objects.filter(path__in=ancestors).values_list("pk", flat=True))
    placeholders = ", ".join(["%s"] * len(ancestor_ids))
    prompts = Pair._meta.get_field("prompt").related_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {PairCoverage._meta.db_table}
                (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT pair.study_id, pair.id, %s, 0, 0
            FROM {Pair._meta.db_table} pair
            JOIN {prompts} prompt ON prompt.id = pair.prompt_id
            WHERE pair.study_id = %s AND NOT pair.is_attention_check
                AND pair.image_a_id IS NOT NULL
                AND prompt.cohort_id IN ({placeholders})
            ON CONFLICT (pair_id, cohort_id) DO NOTHING
            """,
            [cohort.pk, study.pk, *ancestor_ids],
        )
        return cursor.rowcount
