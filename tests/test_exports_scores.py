"""Aggregate exports: the scores table and the cohort split report, with k applied."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from ratings.exports.score_tables import SCORE_COLUMNS, SPLIT_COLUMNS
from ratings.exports.tables import export_stream
from ratings.models import CoherenceScore, Cohort, Criterion, Faction, Score, ScoreRun, Study
from tests.test_exports_votes import imported_variants

COMPUTED_AT = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)


def _run(study: Study, **fields) -> ScoreRun:
    values = {
        "status": ScoreRun.Status.DONE,
        "computed_at": COMPUTED_AT,
        "votes_covered": 812,
        "last_vote_id": 4410,
        "permutations": 1000,
        "bootstrap": 1000,
        "seed": 7,
        **fields,
    }
    return ScoreRun.objects.create(study=study, **values)


def _score(
    run,
    variants,
    cohort: str,
    criterion: str,
    n_raters: int,
    a: int,
    tie: int,
    b: int,
    factions: bool = False,
    **stats,
):
    defaults = {
        "share_b": b / (a + b) if a + b else None,
        "share_b_low": 0.1,
        "share_b_high": 0.9,
        "share_b_ties_half": (b + tie / 2) / (a + tie + b),
        "alpha": 0.2,
        "ndfu": 0.0,
        "agreement": 0.5,
        "heterogeneity_p": 0.5,
        "gai": 1.1,
        "gai_p": 0.2,
        "gai_q": 0.3,
    }
    score = Score.objects.create(
        run=run,
        cohort=Cohort.objects.get(path=cohort),
        criterion=Criterion.objects.get(study=run.study, key=criterion),
        variant_a=variants[0],
        variant_b=variants[1],
        n_raters=n_raters,
        n_votes=a + tie + b + 2,
        count_a=a,
        count_tie=tie,
        count_b=b,
        count_skip=2,
        **{**defaults, **stats},
    )
    if factions:
        # Two opposed halves: what the scorer stores where a split was found.
        half = n_raters // 2
        for position, (size, lean) in enumerate([(n_raters - half, -0.8), (half, 0.8)]):
            Faction.objects.create(
                score=score,
                position=position,
                n_raters=size,
                share=size / n_raters,
                lean=lean,
                count_a=a if lean < 0 else 0,
                count_tie=0,
                count_b=b if lean > 0 else 0,
                count_skip=0,
            )
    return score


SPLIT = {"ndfu": 1.0, "agreement": -0.8, "heterogeneity_p": 0.001}


def _scored(study: Study, *, india: int, tamil: int, kerala: int) -> ScoreRun:
    """India split, Tamil unanimous, Kerala small, Korea contested, Nigeria unanimous."""
    variants = imported_variants()
    run = _run(study)
    for criterion in ("alignment", "representation"):
        _score(run, variants, "india", criterion, india, 40, 0, 40, factions=True, **SPLIT)
        _score(run, variants, "india:tamil", criterion, tamil, 1, 2, 30)
        _score(run, variants, "india:kerala", criterion, kerala, 5, 0, 1)
        _score(run, variants, "korea", criterion, 9, 10, 10, 10, ndfu=0.2, agreement=0.1)
        _score(run, variants, "nigeria", criterion, 6, 0, 1, 20)
    for cohort, n_raters, same, tie, other in [
        ("india", india, 8, 1, 9),
        ("india:tamil", tamil, 6, 0, 1),
        ("india:kerala", kerala, 1, 0, 1),
        ("korea", 9, 4, 4, 4),
        ("nigeria", 6, 1, 0, 5),
    ]:
        CoherenceScore.objects.create(
            run=run,
            cohort=Cohort.objects.get(path=cohort),
            variant_a=variants[0],
            variant_b=variants[1],
            n_raters=n_raters,
            same=same,
            tie=tie,
            other=other,
            ndfu=0.9 if cohort == "india" else 0.0,
        )
    return run


def _rows(study: Study, table: str, fmt: str = "csv") -> list[dict]:
    data = b"".join(export_stream(study=study, table=table, fmt=fmt))
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _by_cell(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(row["cohort"], row["criterion"]): row for row in rows}


NUMBERS = [column.name for column in SCORE_COLUMNS[6:]]


def test_scores_are_labelled_from_the_stored_statistics_and_small_cohorts_hidden(study):
    # India 20 = Tamil 12 + Kerala 3 + 5 raters of plain India: hiding Kerala alone is safe.
    _scored(study, india=20, tamil=12, kerala=3)
    rows = _rows(study, "scores")
    assert list(rows[0]) == [column.name for column in SCORE_COLUMNS]
    assert len(rows) == 10
    cells = _by_cell(rows)
    india = cells[("india", "alignment")]
    assert (india["label"], india["suppressed"]) == ("split", "")
    assert (india["n_raters"], india["count_a"], india["count_tie"], india["count_b"]) == (
        "20",
        "40",
        "0",
        "40",
    )
    assert (india["count_skip"], india["n_votes"], india["share_b"]) == ("2", "82", "0.5")
    assert cells[("india:tamil", "alignment")]["label"] == "consensus"
    assert cells[("korea", "representation")]["label"] == "contested"
    assert cells[("nigeria", "alignment")]["label"] == "consensus"
    kerala = cells[("india:kerala", "alignment")]
    assert (kerala["label"], kerala["suppressed"]) == ("insufficient", "below_k")
    assert all(kerala[name] == "" for name in NUMBERS)
    assert {row["cohort"] for row in rows if row["suppressed"]} == {"india:kerala"}


def test_a_child_that_would_reveal_a_small_sibling_is_suppressed_as_a_complement(study):
    # India 15 = Tamil 12 + Kerala 3: India minus Tamil would be Kerala's numbers.
    _scored(study, india=15, tamil=12, kerala=3)
    cells = _by_cell(_rows(study, "scores"))
    for criterion in ("alignment", "representation"):
        tamil = cells[("india:tamil", criterion)]
        assert (tamil["label"], tamil["suppressed"]) == ("", "complementary")
        assert all(tamil[name] == "" for name in NUMBERS)
        assert cells[("india:kerala", criterion)]["suppressed"] == "below_k"
        assert cells[("india", criterion)]["count_a"] == "40"
        assert cells[("korea", criterion)]["suppressed"] == ""


@pytest.mark.parametrize("table", ["scores", "splits"])
def test_jsonl_and_parquet_hold_the_same_rows_as_csv(study, table):
    _scored(study, india=15, tamil=12, kerala=3)
    from_csv = _rows(study, table)

    def as_text(value):
        if value is None:
            return ""
        return repr(value) if isinstance(value, float) else str(value)

    for fmt in ("jsonl", "parquet"):
        records = _rows(study, table, fmt)
        assert [{key: as_text(value) for key, value in row.items()} for row in records] == from_csv
    assert isinstance(_rows(study, table, "jsonl")[0]["n_raters"], int)


def test_the_split_report_gives_distributions_and_coherence_with_k_applied(study):
    _scored(study, india=15, tamil=12, kerala=3)
    rows = _rows(study, "splits", "jsonl")
    assert list(rows[0]) == [column.name for column in SPLIT_COLUMNS]
    criterion_rows = {(r["cohort"], r["criterion"]): r for r in rows if r["kind"] == "criterion"}
    coherence_rows = {r["cohort"]: r for r in rows if r["kind"] == "coherence"}
    india = criterion_rows[("india", "alignment")]
    assert india["label"] == "split"
    assert (india["share_a"], india["share_tie"], india["share_b"]) == (0.5, 0.0, 0.5)
    assert (india["ndfu"], india["agreement"], india["heterogeneity_p"]) == (1.0, -0.8, 0.001)
    assert india["gai_q"] == 0.3
    korea = criterion_rows[("korea", "alignment")]
    assert korea["share_a"] + korea["share_tie"] + korea["share_b"] == pytest.approx(1.0)
    # Coherence: India's raters are split on whether the stereotypical, offensive image
    # represents them better.
    assert coherence_rows["india"]["share_same"] == pytest.approx(8 / 18)
    assert coherence_rows["india"]["share_other"] == pytest.approx(9 / 18)
    assert coherence_rows["india"]["ndfu"] == 0.9
    assert coherence_rows["india"]["criterion"] == "representation"
    # Whatever the scores hide, the coherence table hides too.
    assert coherence_rows["india:kerala"]["suppressed"] == "below_k"
    assert coherence_rows["india:tamil"]["suppressed"] == "complementary"
    assert coherence_rows["india:tamil"]["share_same"] is None
    assert coherence_rows["nigeria"]["suppressed"] == ""


def test_the_coherence_table_hides_its_own_small_counts_with_a_complement(study):
    run = _scored(study, india=20, tamil=12, kerala=3)
    # Scores hide only Kerala; in the coherence table Tamil also has too few raters.
    CoherenceScore.objects.filter(run=run, cohort__path="india:tamil").update(n_raters=4)
    CoherenceScore.objects.filter(run=run, cohort__path="india").update(n_raters=9)
    coherence = {
        r["cohort"]: r for r in _rows(study, "splits", "jsonl") if r["kind"] == "coherence"
    }
    assert coherence["india:tamil"]["suppressed"] == "below_k"
    assert coherence["india:kerala"]["suppressed"] == "below_k"
    # India 9 - nothing shown below it = 9 >= k: India itself stays.
    assert coherence["india"]["suppressed"] == ""
    scores = _by_cell(_rows(study, "scores"))
    assert scores[("india:tamil", "alignment")]["suppressed"] == ""


def test_exports_read_the_newest_finished_run_only(study):
    variants = imported_variants()
    older = _run(study, computed_at=datetime(2025, 1, 1, tzinfo=UTC))
    _score(older, variants, "korea", "alignment", 9, 1, 1, 1)
    newest = _run(study)
    _score(newest, variants, "korea", "alignment", 9, 0, 0, 30)
    running = _run(study, status=ScoreRun.Status.RUNNING, computed_at=None)
    _score(running, variants, "korea", "alignment", 9, 30, 0, 0)
    failed = _run(
        study, status=ScoreRun.Status.FAILED, computed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    _score(failed, variants, "korea", "alignment", 9, 30, 0, 0)
    (row,) = _rows(study, "scores")
    assert (row["count_a"], row["count_b"]) == ("0", "30")


def test_a_study_without_scores_exports_an_empty_table(study):
    assert _rows(study, "scores") == []
    data = b"".join(export_stream(study=study, table="scores", fmt="csv")).decode()
    assert data.splitlines() == [",".join(column.name for column in SCORE_COLUMNS)]
    assert (
        pq.read_table(
            io.BytesIO(b"".join(export_stream(study=study, table="splits", fmt="parquet")))
        ).num_rows
        == 0
    )
