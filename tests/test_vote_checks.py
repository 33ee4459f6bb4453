"""Attention checks at scale and under skipping: picked without a scan, never skipped for free."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.models import Q
from django.urls import reverse

from ratings.assignment.services import assignment_for_rater
from ratings.models import Assignment, AssignmentKind, Cohort, Pair, Participation
from ratings.voting.services import assignment_skip
from tests.conftest import _rater
from tests.rating_pages import client_for, serve_and_vote, served_assignment_id
from tests.test_assignment import _bulk_pairs

ALL_TIES = dict.fromkeys(["alignment", "representation", "stereotype", "offensiveness"], "tie")


def _checks_every_other_pair(study, **fields) -> None:
    fields = {"attention_check_rate": 0.5, "min_seconds_per_pair": 0, **fields}
    type(study).objects.filter(pk=study.pk).update(**fields)
    study.refresh_from_db()


def _generic_plan(sql: str, params: dict) -> str:
    """EXPLAIN a statement as the app runs it: prepared, planned once for any parameters."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    prepared = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match.group(1)) + 1}", sql)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE planned AS {prepared}")
        values = ", ".join(["%s"] * len(names))
        cursor.execute(f"EXPLAIN EXECUTE planned({values})", [params[n] for n in names])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE planned")
    return plan


def test_the_identical_check_is_picked_from_an_index_not_a_scan_of_the_pairs(study, variants):
    _checks_every_other_pair(study)
    _bulk_pairs(study, Cohort.objects.get(path="india"), 7_000)
    rater = _rater("ravi", "india:tamil")
    serve_and_vote(study, rater)  # a pair first: the check is due next
    statements: list[tuple[str, dict]] = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        check = assignment_for_rater(study=study, rater=rater)
    assert check.kind == AssignmentKind.IDENTICAL_CHECK
    assert check.pair.image_a_id == check.pair.image_b_id
    image = check.pair.image_a_id
    source = Pair.objects.get(Q(image_a=image) | Q(image_b=image), is_attention_check=False)
    assert source.prompt.cohort.path == "india"  # in-group for a Tamil rater
    assert not any("random()" in sql.lower() for sql, _ in statements)
    for sql, params in statements:
        if isinstance(params, dict) and "%(" in sql:
            plan = _generic_plan(sql, params)
            for table in ("ratings_pair ", "ratings_paircoverage", "generation_image"):
                assert f"Seq Scan on {table}" not in plan, (sql, plan)


def test_the_search_for_scans_finds_one(study, variants):
    """The check above can fail: a scan of the pairs shows in its plan."""
    _bulk_pairs(study, Cohort.objects.get(path="india"), 7_000)
    plan = _generic_plan(
        "SELECT id FROM ratings_pair WHERE study_id = %(study)s AND seed = %(seed)s",
        {"study": study.pk, "seed": 1},
    )
    assert "Seq Scan on ratings_pair " in plan


@pytest.mark.parametrize(
    ("kind", "before"),
    [
        (AssignmentKind.IDENTICAL_CHECK, [None]),  # a pair, then the identical check
        (AssignmentKind.REPEAT_CHECK, [None, ALL_TIES, None]),  # then a pair, then a repeat
    ],
)
def test_skipping_an_attention_check_fails_it(study, pair_factory, rater_india, kind, before):
    _checks_every_other_pair(study, max_failed_checks=0)
    for _ in range(4):
        pair_factory()
    for answers in before:
        serve_and_vote(study, rater_india, *([answers] if answers else []))
    check = assignment_for_rater(study=study, rater=rater_india)
    assert check.kind == kind
    assignment_skip(rater=rater_india, assignment_id=check.pk, reason="cant_see")
    participation = Participation.objects.get(study=study, rater=rater_india)
    assert participation.checks_failed == 1
    assert participation.flagged  # past an allowance of none
    assert Assignment.objects.get(pk=check.pk).skipped_at is not None


def test_skipping_a_regular_pair_fails_nothing(study, pair_factory, rater_india):
    _checks_every_other_pair(study, attention_check_rate=0)
    pair_factory()
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(
        client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    )
    client.post(
        reverse("ratings:skip", args=["test-study"]),
        {"assignment": assignment, "reason": "unfamiliar"},
    )
    participation = Participation.objects.get(study=study, rater=rater_india)
    assert (participation.checks_failed, participation.flagged) == (0, False)
