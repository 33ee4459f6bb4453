"""Vote exports: long and wide form, CSV, JSONL and Parquet, pseudonyms, labels, streaming."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from generation.models import ModelVariant, Prompt, PromptBatch
from ratings.entry.services import participation_consent, rater_ensure
from ratings.exports.tables import export_stream
from ratings.exports.votes import VOTES_LONG_COLUMNS, votes_copy_statement
from ratings.models import (
    Answer,
    AssignmentKind,
    Cohort,
    Criterion,
    Pair,
    Participation,
    Rater,
    Study,
    Vote,
    VoteSource,
)
from ratings.studies import study_create

LONG_COLUMNS = [
    "rater_id",
    "cohort",
    "item_id",
    "variant_a",
    "variant_b",
    "criterion",
    "choice",
    "prompt",
    "category",
    "created_at",
    "vote_id",
    "study",
    "prompt_cohort",
    "seed",
    "fingerprint_a",
    "fingerprint_b",
    "shown_left",
    "time_on_task_ms",
    "rater_flagged",
    "attention_check",
    "source",
]
CRITERIA = ["alignment", "representation", "stereotype", "offensiveness"]


def synthetic_votes(
    *,
    study: Study,
    variants: tuple[ModelVariant, ModelVariant],
    cohort_paths: list[str],
    raters: int,
    pairs: int,
    votes_per_rater: int,
    flagged_every: int = 0,
) -> None:
    """Insert raters, rendered pairs, votes and answers with a few set-based SQL statements.

    Rater r holds cohort_paths[r % len]; it votes on `votes_per_rater` distinct pairs; answers
    cycle through a, b, tie, skip. Fast enough for a million votes in the benchmark.
    """
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    cohort_ids = [Cohort.objects.get(path=path.split(":")[0]).pk for path in cohort_paths]
    base, tuned = variants
    stamp = datetime(2025, 3, 1, tzinfo=UTC)
    statements = [
        (
            "INSERT INTO generation_prompt (text, category, cohort_id, batch_id) "
            "SELECT 'a synthetic prompt, ' || g, 'food', (%(cohorts)s::bigint[])[1 + g %% "
            "%(n_cohorts)s], %(batch)s FROM generate_series(1, %(pairs)s) g"
        ),
        (
            "INSERT INTO generation_image (seed, status, file, fingerprint, error, attempts, "
            "worker, queued_at, variant_id, prompt_id, claimed_by, preview) "
            "SELECT 1000 + p.id, 'done', 'images/' || p.id || '-' || v.id || '.png', "
            "md5(v.id::text || 'weights'), '', 1, '', %(stamp)s, v.id, p.id, '', '' "
            "FROM generation_prompt p CROSS JOIN unnest(ARRAY[%(base)s, %(tuned)s]::bigint[]) "
            "AS v(id) WHERE p.batch_id = %(batch)s"
        ),
        (
            "INSERT INTO ratings_pair (created_at, prompt_id, variant_a_id, variant_b_id, "
            "study_id, is_attention_check, external_id, seed, image_a_id, image_b_id) "
            "SELECT %(stamp)s, p.id, %(base)s, %(tuned)s, %(study)s, false, '', ia.seed, ia.id, "
            "ib.id FROM generation_prompt p "
            "JOIN generation_image ia ON ia.prompt_id = p.id AND ia.variant_id = %(base)s "
            "JOIN generation_image ib ON ib.prompt_id = p.id AND ib.variant_id = %(tuned)s "
            "WHERE p.batch_id = %(batch)s ORDER BY p.id"
        ),
        (
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "SELECT '!', false, 'synth-' || %(study)s || '-' || g, '', '', "
            "'synth' || g || '@example.org', false, true, %(stamp)s "
            "FROM generate_series(1, %(raters)s) g"
        ),
        (
            "INSERT INTO ratings_rater (created_at, user_id, panel_id) "
            "SELECT %(stamp)s, u.id, 'panel-' || u.username FROM auth_user u "
            "WHERE u.username LIKE 'synth-' || %(study)s || '-%%'"
        ),
        (
            "INSERT INTO ratings_participation (panel_study_id, panel_session_id, demographics, "
            "checks_passed, checks_failed, flagged, created_at, rater_id, study_id) "
            "SELECT '', '', '{}', 0, 0, %(flagged_every)s > 0 AND r.id %% "
            "greatest(%(flagged_every)s, 1) = 0, %(stamp)s, r.id, %(study)s "
            "FROM ratings_rater r JOIN auth_user u ON u.id = r.user_id "
            "WHERE u.username LIKE 'synth-' || %(study)s || '-%%'"
        ),
        (
            "WITH rs AS (SELECT array_agg(r.id ORDER BY r.id) AS ids FROM ratings_rater r "
            "  JOIN auth_user u ON u.id = r.user_id "
            "  WHERE u.username LIKE 'synth-' || %(study)s || '-%%'), "
            "ps AS (SELECT array_agg(id ORDER BY id) AS ids FROM ratings_pair "
            "  WHERE study_id = %(study)s) "
            "INSERT INTO ratings_vote (shown_left, cohort_paths, time_on_task_ms, comment, "
            "created_at, pair_id, rater_id, study_id, kind, too_fast, source) "
            "SELECT CASE WHEN (r + j) %% 2 = 0 THEN 'a' ELSE 'b' END, "
            "jsonb_build_array((%(paths)s::text[])[1 + (r - 1) %% %(n_cohorts)s]), "
            "3000 + (r * 31 + j * 17) %% 9000, '', "
            "%(stamp)s + make_interval(secs => r * %(votes_per_rater)s + j), "
            "ps.ids[1 + (r * 7 + j) %% %(pairs)s], rs.ids[r], %(study)s, 'pair', false, "
            "'browser' FROM rs, ps, generate_series(1, %(raters)s) r, "
            "generate_series(0, %(votes_per_rater)s - 1) j"
        ),
        (
            "INSERT INTO ratings_answer (choice, criterion_id, vote_id) "
            "SELECT (ARRAY['a', 'b', 'tie', 'skip'])[1 + (v.id + c.position) %% 4], c.id, v.id "
            "FROM ratings_vote v JOIN ratings_criterion c ON c.study_id = v.study_id "
            "WHERE v.study_id = %(study)s"
        ),
    ]
    params = {
        "cohorts": cohort_ids,
        "n_cohorts": len(cohort_paths),
        "paths": cohort_paths,
        "batch": batch.pk,
        "pairs": pairs,
        "raters": raters,
        "votes_per_rater": votes_per_rater,
        "base": base.pk,
        "tuned": tuned.pk,
        "study": study.pk,
        "stamp": stamp,
        "flagged_every": flagged_every,
    }
    assert votes_per_rater <= pairs
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement, params)
        # As a bulk import does: the planner sees the rows before autovacuum would (inside a
        # test's transaction, never), or it plans the export for empty tables, with nested
        # loops over tens of thousands of rows.
        cursor.execute(
            "ANALYZE generation_prompt, generation_image, ratings_pair, ratings_rater, "
            "ratings_participation, ratings_vote, ratings_answer"
        )


def imported_variants() -> tuple[ModelVariant, ModelVariant]:
    """Two variants known by name only: exports need no rendering."""
    return (
        ModelVariant.objects.get_or_create(name="sd14", defaults={"role": "imported"})[0],
        ModelVariant.objects.get_or_create(name="sd14-lora-india", defaults={"role": "imported"})[
            0
        ],
    )


def _body(table: str, fmt: str, study: Study) -> bytes:
    return b"".join(export_stream(study=study, table=table, fmt=fmt))


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _as_text(value: object) -> str:
    """The CSV spelling of a value read back from JSONL or Parquet."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return str(value)


def _as_csv_rows(records: list[dict]) -> list[dict[str, str]]:
    return [{name: _as_text(value) for name, value in record.items()} for record in records]


@pytest.fixture
def panel_rater(study) -> Rater:
    """A rater with an email, a username and a panel id, none of which may be exported."""
    user = User.objects.create_user(
        username="leak-check-username", email="leak-check@example.org", password="x"
    )
    rater = rater_ensure(user=user)
    Rater.objects.filter(pk=rater.pk).update(panel_id="PANEL-ID-5f3a9c")
    rater.refresh_from_db()
    participation_consent(study=study, rater=rater)
    return rater


def _vote(
    *,
    study: Study,
    rater: Rater,
    pair: Pair,
    choices: dict[str, str],
    cohort_paths: list[str],
    kind: str = AssignmentKind.PAIR,
    source: str = VoteSource.BROWSER,
    created_at: datetime | None = None,
) -> Vote:
    vote = Vote.objects.create(
        study=study,
        pair=pair,
        rater=rater,
        shown_left="" if source == VoteSource.IMPORT else "b",
        source=source,
        cohort_paths=cohort_paths,
        time_on_task_ms=0 if source == VoteSource.IMPORT else 4321,
        kind=kind,
        created_at=created_at or datetime(2025, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
    )
    for criterion in Criterion.objects.filter(study=study):
        if criterion.key in choices:
            Answer.objects.create(vote=vote, criterion=criterion, choice=choices[criterion.key])
    return vote


def _raters(study: Study, prefix: str, count: int) -> list[Rater]:
    made = []
    for index in range(count):
        user = User.objects.create_user(username=f"{prefix}{index}", email=f"{prefix}{index}@x.org")
        rater = rater_ensure(user=user)
        participation_consent(study=study, rater=rater)
        made.append(rater)
    return made


def imported_pair_make(study: Study) -> Pair:
    """Make a pair imported from an earlier survey: an item id, no images, no seed."""
    base, tuned = imported_variants()
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1, source_name="survey")
    prompt = Prompt.objects.create(
        batch=batch,
        text='a wedding in Chennai, "traditional"',
        cohort=Cohort.objects.get(path="india:tamil"),
        category="festivals",
    )
    return Pair.objects.create(
        study=study, prompt=prompt, variant_a=base, variant_b=tuned, external_id="item-17"
    )


@pytest.fixture
def imported_pair(study) -> Pair:
    return imported_pair_make(study)


def test_long_form_has_the_fixed_columns_and_one_row_per_vote_and_criterion(study, imported_pair):
    rater = _raters(study, "solo", 1)[0]
    vote = _vote(
        study=study,
        rater=rater,
        pair=imported_pair,
        choices={"alignment": "a", "representation": "b", "stereotype": "tie"},
        cohort_paths=["india:tamil"],
        source=VoteSource.IMPORT,
    )
    rows = _csv_rows(_body("votes_long", "csv", study))
    assert list(VOTES_LONG_COLUMNS) == LONG_COLUMNS
    assert list(rows[0]) == LONG_COLUMNS
    assert [(row["criterion"], row["choice"]) for row in rows] == [
        ("alignment", "a"),
        ("representation", "b"),
        ("stereotype", "tie"),
    ]
    row = rows[0]
    assert row["item_id"] == "item-17"
    assert (row["variant_a"], row["variant_b"]) == ("sd14", "sd14-lora-india")
    assert row["prompt"] == 'a wedding in Chennai, "traditional"'
    assert (row["category"], row["prompt_cohort"], row["study"]) == (
        "festivals",
        "india:tamil",
        "test-study",
    )
    assert row["created_at"] == "2025-05-01T12:00:00.250000+00:00"
    assert row["vote_id"] == str(vote.pk)
    # Imported: no seed, no images, no screen side, no time on task.
    assert (row["seed"], row["fingerprint_a"], row["fingerprint_b"], row["shown_left"]) == (
        "",
        "",
        "",
        "",
    )
    assert (row["time_on_task_ms"], row["source"]) == ("0", "import")
    assert (row["rater_flagged"], row["attention_check"]) == ("false", "")


def test_rendered_pairs_carry_seed_fingerprints_side_and_time(study, pair_factory):
    pair = pair_factory("korea", "a bowl of bibimbap")
    rater = _raters(study, "seoul", 1)[0]
    _vote(study=study, rater=rater, pair=pair, choices={"alignment": "b"}, cohort_paths=["korea"])
    (row,) = _csv_rows(_body("votes_long", "csv", study))
    assert row["item_id"] == str(pair.pk)
    assert row["seed"] == str(pair.seed)
    assert row["fingerprint_a"] == pair.image_a.fingerprint
    assert row["fingerprint_b"] == pair.image_b.fingerprint
    assert (row["variant_a"], row["variant_b"]) == ("tiny-base", "tiny-lora")
    assert (row["shown_left"], row["time_on_task_ms"], row["source"]) == ("b", "4321", "browser")


def test_attention_checks_and_flagged_raters_are_marked_not_dropped(study, imported_pair):
    honest, careless = _raters(study, "flag", 2)
    Participation.objects.filter(study=study, rater=careless).update(flagged=True)
    other = Pair.objects.create(
        study=study,
        prompt=imported_pair.prompt,
        variant_a=imported_pair.variant_a,
        variant_b=imported_pair.variant_b,
        external_id="item-18",
    )
    _vote(
        study=study, rater=honest, pair=imported_pair, choices={"alignment": "a"}, cohort_paths=[]
    )
    _vote(
        study=study,
        rater=careless,
        pair=imported_pair,
        choices={"alignment": "b"},
        cohort_paths=[],
        kind=AssignmentKind.IDENTICAL_CHECK,
    )
    _vote(
        study=study,
        rater=careless,
        pair=other,
        choices={"alignment": "tie"},
        cohort_paths=[],
        kind=AssignmentKind.REPEAT_CHECK,
    )
    rows = _csv_rows(_body("votes_long", "csv", study))
    assert sorted(
        (row["choice"], row["rater_flagged"], row["attention_check"]) for row in rows
    ) == [
        ("a", "false", ""),
        ("b", "true", "identical"),
        ("tie", "true", "repeat"),
    ]


def test_cohort_labels_below_k_are_rolled_up_or_left_out(study, imported_pair):
    # k = 5: six Tamil raters keep their label; three Kerala raters are rolled up into India,
    # which with three plain India raters makes six; two Korea raters lose their label, and so
    # does Nigeria (the smallest sole label) so that the unlabelled group reaches k.
    groups = {
        "india:tamil": 6,
        "india:kerala": 3,
        "india": 3,
        "korea": 2,
        "nigeria": 5,
    }
    expected = {
        "india:tamil": "india:tamil",
        "india:kerala": "india",
        "india": "india",
        "korea": "",
        "nigeria": "",
    }
    for path, count in groups.items():
        for rater in _raters(study, path.replace(":", "-"), count):
            _vote(
                study=study,
                rater=rater,
                pair=imported_pair,
                choices={"alignment": "a"},
                cohort_paths=[path],
            )
    rows = _csv_rows(_body("votes_long", "csv", study))
    by_vote = {int(row["vote_id"]): row["cohort"] for row in rows}
    for vote in Vote.objects.filter(study=study):
        assert by_vote[vote.pk] == expected[vote.cohort_paths[0]], vote.cohort_paths
    assert {label for label in by_vote.values() if label} == {"india:tamil", "india"}


def test_a_rater_in_two_released_cohorts_shows_both_sorted(study, imported_pair):
    for rater in _raters(study, "both", 5):
        _vote(
            study=study,
            rater=rater,
            pair=imported_pair,
            choices={"alignment": "a"},
            cohort_paths=["korea", "india"],
        )
    rows = _csv_rows(_body("votes_long", "csv", study))
    assert {row["cohort"] for row in rows} == {"india;korea"}


def test_wide_form_has_one_row_per_vote_and_a_column_per_criterion(study, imported_pair):
    first, second = _raters(study, "wide", 2)
    one = _vote(
        study=study,
        rater=first,
        pair=imported_pair,
        choices={"alignment": "a", "representation": "b", "stereotype": "tie"},
        cohort_paths=["india"],
    )
    two = _vote(
        study=study,
        rater=second,
        pair=imported_pair,
        choices=dict.fromkeys(CRITERIA, "skip"),
        cohort_paths=["india"],
    )
    rows = _csv_rows(_body("votes_wide", "csv", study))
    assert list(rows[0]) == [
        *LONG_COLUMNS[:5],
        *CRITERIA,
        *[name for name in LONG_COLUMNS[7:]],
    ]
    assert [row["vote_id"] for row in rows] == [str(one.pk), str(two.pk)]
    assert [rows[0][key] for key in CRITERIA] == ["a", "b", "tie", ""]
    assert [rows[1][key] for key in CRITERIA] == ["skip"] * 4
    long_rows = _csv_rows(_body("votes_long", "csv", study))
    assert len(long_rows) == 7
    # The identifying columns agree with the long form's.
    for name in ("rater_id", "item_id", "prompt", "created_at", "shown_left"):
        assert rows[0][name] == long_rows[0][name]


def test_jsonl_and_parquet_hold_the_same_rows_as_csv(study, imported_pair, pair_factory):
    pair = pair_factory("india:tamil", "a kolam, drawn at dawn;\nwith rice flour")
    raters = _raters(study, "fmt", 6)
    for index, rater in enumerate(raters):
        _vote(
            study=study,
            rater=rater,
            pair=imported_pair if index % 2 else pair,
            choices={"alignment": "ab"[index % 2], "offensiveness": "tie"},
            cohort_paths=["india:tamil"],
            source=VoteSource.IMPORT if index % 2 else VoteSource.BROWSER,
        )
    Participation.objects.filter(study=study, rater=raters[0]).update(flagged=True)
    for table in ("votes_long", "votes_wide"):
        from_csv = _csv_rows(_body(table, "csv", study))
        jsonl = _body(table, "jsonl", study).decode()
        records = [json.loads(line) for line in jsonl.splitlines()]
        assert jsonl.endswith("\n")
        assert len(records) == len(from_csv) == (12 if table == "votes_long" else 6)
        # JSON keeps types: numbers, booleans and nulls, not their CSV spellings.
        assert isinstance(records[0]["vote_id"], int)
        assert isinstance(records[0]["rater_flagged"], bool)
        assert _as_csv_rows(records) == from_csv
        parquet = pq.read_table(io.BytesIO(_body(table, "parquet", study)))
        assert parquet.schema.field("created_at").type.tz == "UTC"
        assert parquet.schema.field("seed").type == "int64"
        assert _as_csv_rows(parquet.to_pylist()) == from_csv
    # A prompt with a newline and a separator survives every format.
    assert any(row["prompt"].startswith("a kolam, drawn at dawn;\nwith") for row in from_csv)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_name_no_user_id_username_email_or_panel_id(study, imported_pair, panel_rater, fmt):
    raters = [panel_rater, *_raters(study, "quiet", 5)]
    for rater in raters:
        _vote(
            study=study,
            rater=rater,
            pair=imported_pair,
            choices={"alignment": "a"},
            cohort_paths=["india"],
        )
    for table in ("votes_long", "votes_wide"):
        data = _body(table, fmt, study)
        if fmt == "parquet":
            records = pq.read_table(io.BytesIO(data)).to_pylist()
        else:
            records = (
                [json.loads(line) for line in data.decode().splitlines()]
                if fmt == "jsonl"
                else _csv_rows(data)
            )
        text = json.dumps(records, default=str)
        for secret in ("leak-check-username", "leak-check@example.org", "PANEL-ID-5f3a9c"):
            assert secret not in text
            assert secret.encode() not in data
        pseudonyms = {record["rater_id"] for record in records}
        assert len(pseudonyms) == len(raters)
        ids = {str(rater.pk) for rater in raters} | {str(rater.user_id) for rater in raters}
        assert not pseudonyms & ids
        assert all(value.startswith("r_") and len(value) == 22 for value in pseudonyms)


def test_pseudonyms_differ_between_studies(study, imported_pair):
    other = study_create(name="Other", slug="other-study")
    rater = _raters(study, "twice", 1)[0]
    _vote(study=study, rater=rater, pair=imported_pair, choices={"alignment": "a"}, cohort_paths=[])
    other_pair = Pair.objects.create(
        study=other,
        prompt=imported_pair.prompt,
        variant_a=imported_pair.variant_a,
        variant_b=imported_pair.variant_b,
        external_id="item-17",
    )
    _vote(study=other, rater=rater, pair=other_pair, choices={"alignment": "a"}, cohort_paths=[])
    (here,) = {row["rater_id"] for row in _csv_rows(_body("votes_long", "csv", study))}
    (there,) = {row["rater_id"] for row in _csv_rows(_body("votes_long", "csv", other))}
    assert here != there


def test_a_large_export_streams_in_bounded_chunks_without_building_the_body(study):
    synthetic_votes(
        study=study,
        variants=imported_variants(),
        cohort_paths=["india", "india:tamil", "korea"],
        raters=60,
        pairs=400,
        votes_per_rater=250,
    )
    assert Vote.objects.filter(study=study).count() == 15_000
    csv_size = len(_body("votes_long", "csv", study))
    for fmt in ("csv", "parquet"):
        stream = export_stream(study=study, table="votes_long", fmt=fmt)
        tracemalloc.start()
        total = chunks = largest = 0
        for chunk in stream:
            total += len(chunk)
            chunks += 1
            largest = max(largest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # Python never held the body: its allocations peaked far below the CSV's size.
        assert peak < csv_size / 3, (fmt, peak, csv_size)
        if fmt == "csv":
            assert total == csv_size
            assert chunks > 10
            assert largest < csv_size / 10
    rows = _csv_rows(_body("votes_long", "csv", study))
    assert len(rows) == 60_000
    assert {row["cohort"] for row in rows} == {"india", "india:tamil", "korea"}


def test_the_download_views_stream(study, imported_pair, researcher):
    rater = _raters(study, "dl", 1)[0]
    _vote(study=study, rater=rater, pair=imported_pair, choices={"alignment": "a"}, cohort_paths=[])
    client = Client()
    client.force_login(researcher)
    for fmt, content_type in [
        ("csv", "text/csv; charset=utf-8"),
        ("jsonl", "application/x-ndjson; charset=utf-8"),
        ("parquet", "application/vnd.apache.parquet"),
    ]:
        response = client.get(reverse("ratings:export", args=[study.slug, "votes_long", fmt]))
        assert response.status_code == 200
        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Type"] == content_type
        assert response["Content-Disposition"] == (
            f'attachment; filename="test-study-votes_long.{fmt}"'
        )
        assert b"".join(response.streaming_content)
    missing = client.get(reverse("ratings:export", args=[study.slug, "votes_long", "xlsx"]))
    assert missing.status_code == 404


def test_a_study_without_votes_exports_headers_and_schemas_only(study):
    for table in ("votes_long", "votes_wide"):
        lines = _body(table, "csv", study).decode().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("rater_id,cohort,item_id,variant_a,variant_b,")
        assert _body(table, "jsonl", study) == b""
        parquet = pq.read_table(io.BytesIO(_body(table, "parquet", study)))
        assert parquet.num_rows == 0
        assert parquet.schema.names[:5] == LONG_COLUMNS[:5]


def test_the_csv_export_is_its_copy_statement_byte_for_byte(study, imported_pair):
    for rater in _raters(study, "copy", 3):
        _vote(
            study=study,
            rater=rater,
            pair=imported_pair,
            choices={"alignment": "a", "stereotype": "b"},
            cohort_paths=["korea"],
        )
    sql, params = votes_copy_statement(study=study)
    copied = bytearray()
    with connection.connection.cursor() as cursor, cursor.copy(sql, params) as copy:
        for data in copy:
            copied += data
    assert bytes(copied) == _body("votes_long", "csv", study)
    assert copied.count(b"\n") == 7


def test_a_criterion_named_like_a_fixed_column_gets_a_prefixed_wide_column(study, imported_pair):
    source = Criterion.objects.create(study=study, key="source", question="Where?", position=9)
    rater = _raters(study, "clash", 1)[0]
    vote = _vote(
        study=study,
        rater=rater,
        pair=imported_pair,
        choices={"alignment": "b"},
        cohort_paths=[],
    )
    Answer.objects.create(vote=vote, criterion=source, choice="tie")
    (row,) = _csv_rows(_body("votes_wide", "csv", study))
    assert (row["criterion_source"], row["source"], row["alignment"]) == ("tie", "browser", "b")
