"""Exports of a study for researchers: votes (long and wide), scores, the cohort split report.

Every export streams in constant memory. The vote tables are written by PostgreSQL itself:
`COPY (query) TO STDOUT` renders the CSV, a JSON object per row for JSONL, and a CSV that
pyarrow re-encodes batch by batch for Parquet, so millions of rows pass through Python as a few
large buffers, never as row objects. Privacy is applied before a byte leaves: raters appear
under study-salted pseudonyms, cohort labels only where they meet k
(`ratings.privacy.cohort_labels_release`), and aggregate tables hide small cohorts with
complementary suppression (`ratings.privacy.cohort_tables_suppress`).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from generation.models import Image, ModelVariant, Prompt
from ratings.models import (
    Answer,
    CoherenceScore,
    Cohort,
    Criterion,
    Pair,
    Participation,
    Score,
    ScoreRun,
    Study,
    Vote,
)
from ratings.privacy import (
    SUPPRESSED_BELOW_K,
    cohort_cells_suppress,
    cohort_labels_release,
    cohort_tables_suppress,
    rater_pseudonym,
)
from ratings.scores import STATISTIC_FIELDS, scores_latest, study_thresholds
from ratings.scoring import score_label

TABLES = ("votes_long", "votes_wide", "scores", "splits")
FORMATS = ("csv", "jsonl", "parquet")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
TABLE_TITLES = {
    "votes_long": "votes in long form (one row per vote and criterion)",
    "votes_wide": "votes in wide form (one row per vote, one column per criterion)",
    "scores": "split-aware scores (one row per cohort, criterion and variant pair)",
    "splits": "cohort split report (label, distribution and agreement per cohort and "
    "criterion, and the cross-criterion coherence rows)",
}
# Bytes handed to the web server at a time: large enough that a million rows are a few
# hundred writes, small enough that memory stays flat.
CHUNK_BYTES = 256 * 1024
# Rows per Parquet row group: pyarrow holds one group in memory while it encodes it.
PARQUET_ROW_GROUP = 32 * 1024


class ExportError(ValueError):
    """An export that does not exist: an unknown table or format."""


@dataclass(frozen=True)
class Column:
    """One column of an export: its name, type, meaning and, for vote tables, its SQL."""

    name: str
    kind: str  # text | int | float | bool | timestamp
    meaning: str
    sql: str = ""


def _arrow_type(kind: str):
    import pyarrow as pa

    return {
        "text": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


# The vote tables. Names and order of the long form are a fixed interface (import_votes reads
# the first seven, and prompt, category and created_at).

_ATTENTION_CHECK_SQL = (
    "CASE WHEN v.kind <> 'pair' THEN v.kind WHEN p.is_attention_check THEN 'identical' ELSE '' END"
)

_VOTE_HEAD = (
    Column(
        "rater_id",
        "text",
        "The rater's pseudonym in this study: an HMAC-SHA256 of the rater under the study's "
        "secret salt. Never a user id, username, email or panel id; differs between studies.",
        "ps.pseudonym",
    ),
    Column(
        "cohort",
        "text",
        "The rater's cohort labels when voting that meet k, sorted, joined with ';' (labels "
        "held by fewer than k raters are rolled up into their parent or left out; may be empty).",
        "COALESCE(cl.labels, '')",
    ),
    Column(
        "item_id",
        "text",
        "The pair rated: its id here, or the item id of a pair imported from an earlier survey.",
        "CASE WHEN p.external_id <> '' THEN p.external_id ELSE p.id::text END",
    ),
    Column(
        "variant_a", "text", "The pair's variant a (the base model, if there is one).", "va.name"
    ),
    Column("variant_b", "text", "The pair's variant b (the fine-tuned model).", "vb.name"),
)
_VOTE_CRITERION = (
    Column("criterion", "text", "The criterion's key (its question is in the card).", "c.key"),
    Column(
        "choice",
        "text",
        "The answer in variant terms, never screen sides: a or b (the variant the rater gave "
        "as the answer to the criterion's question), tie (both equally) or skip (can't judge).",
        "an.choice",
    ),
)
_VOTE_TAIL = (
    Column("prompt", "text", "The prompt both images were rendered from.", "pr.text"),
    Column("category", "text", "The prompt's category (food, clothing, ...).", "pr.category"),
    Column("created_at", "timestamp", "When the vote was cast, ISO 8601 in UTC.", "v.created_at"),
    Column("vote_id", "int", "The vote's id; its rows share it.", "v.id"),
    Column("study", "text", "The study's slug.", "%(study_slug)s::text"),
    Column("prompt_cohort", "text", "The cohort the prompt was written for.", "pc.path"),
    Column(
        "seed", "int", "The seed both images were rendered from (empty when imported).", "p.seed"
    ),
    Column(
        "fingerprint_a",
        "text",
        "Fingerprint of variant a's settings and weight files that rendered image a "
        "(empty for imported pairs without images).",
        "ia.fingerprint",
    ),
    Column("fingerprint_b", "text", "The same for image b.", "ib.fingerprint"),
    Column(
        "shown_left",
        "text",
        "Which variant's image was shown on the left (a or b; empty when imported).",
        "v.shown_left",
    ),
    Column(
        "time_on_task_ms",
        "int",
        "Milliseconds from serving the pair to the vote (0 when imported).",
        "v.time_on_task_ms",
    ),
    Column(
        "rater_flagged",
        "bool",
        "Whether the rater failed more attention checks than the study allows; their votes "
        "stay here and are left out of scores.",
        "COALESCE(pa.flagged, false)",
    ),
    Column(
        "attention_check",
        "text",
        "Empty for a regular pair; 'identical' (one image twice) or 'repeat' (an earlier pair "
        "with sides swapped) for an attention check, which is never scored.",
        _ATTENTION_CHECK_SQL,
    ),
    Column("source", "text", "browser (cast here) or import (from an earlier survey).", "v.source"),
)
VOTES_LONG_COLUMNS = tuple(column.name for column in (*_VOTE_HEAD, *_VOTE_CRITERION, *_VOTE_TAIL))


def _tables() -> dict[str, str]:
    return {
        "vote": Vote._meta.db_table,
        "answer": Answer._meta.db_table,
        "criterion": Criterion._meta.db_table,
        "pair": Pair._meta.db_table,
        "prompt": Prompt._meta.db_table,
        "cohort": Cohort._meta.db_table,
        "variant": ModelVariant._meta.db_table,
        "image": Image._meta.db_table,
        "participation": Participation._meta.db_table,
    }


# Everything a vote row reads besides its answers; the two unnest() tables carry the
# pseudonyms and the released cohort labels, computed in Python once per export.
_VOTE_JOINS = """
JOIN {pair} p ON p.id = v.pair_id
JOIN {prompt} pr ON pr.id = p.prompt_id
JOIN {cohort} pc ON pc.id = pr.cohort_id
JOIN {variant} va ON va.id = p.variant_a_id
JOIN {variant} vb ON vb.id = p.variant_b_id
LEFT JOIN {image} ia ON ia.id = p.image_a_id
LEFT JOIN {image} ib ON ib.id = p.image_b_id
LEFT JOIN {participation} pa ON pa.study_id = v.study_id AND pa.rater_id = v.rater_id
JOIN unnest(%(rater_ids)s::bigint[], %(pseudonyms)s::text[]) AS ps(rater_id, pseudonym)
  ON ps.rater_id = v.rater_id
LEFT JOIN unnest(%(cohort_sets)s::text[]::jsonb[], %(cohort_labels)s::text[])
  AS cl(paths, labels) ON cl.paths = v.cohort_paths
"""


@dataclass
class VoteRelease:
    """What a vote export may show of its raters: pseudonyms and released cohort labels."""

    pseudonyms: dict[int, str]
    labels_by_set: dict[str, str]  # the JSON of a vote's cohort_paths -> its "cohort" cell
    release: dict[str, str | None]  # original label -> label shown, or None if dropped

    @property
    def rolled_up(self) -> dict[str, str]:
        return {label: shown for label, shown in self.release.items() if shown and shown != label}

    @property
    def dropped(self) -> list[str]:
        return sorted(label for label, shown in self.release.items() if shown is None)


def votes_release(*, study: Study) -> VoteRelease:
    """Compute the pseudonyms and released labels of a study's raters, from one small query."""
    labels_by_rater: dict[int, set[str]] = defaultdict(set)
    cohort_sets: set[str] = set()
    with connection.cursor() as cursor:
        # jsonb text is canonical, so equal label lists give equal text.
        cursor.execute(
            f"SELECT DISTINCT rater_id, cohort_paths::text FROM {Vote._meta.db_table} "
            "WHERE study_id = %s",
            [study.pk],
        )
        for rater_id, paths_json in cursor.fetchall():
            labels_by_rater[rater_id].update(json.loads(paths_json))
            cohort_sets.add(paths_json)
    release = cohort_labels_release(
        labels_by_rater, k=study.min_cohort_size, protect_unlabelled=True
    )
    labels_by_set = {
        paths_json: ";".join(
            sorted({release[path] for path in json.loads(paths_json) if release.get(path)})
        )
        for paths_json in cohort_sets
    }
    pseudonyms = {
        rater_id: rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_id)
        for rater_id in labels_by_rater
    }
    return VoteRelease(pseudonyms=pseudonyms, labels_by_set=labels_by_set, release=release)


@dataclass
class VoteQuery:
    """The SQL of a vote table, with the pseudonyms and released labels as its parameters."""

    columns: tuple[Column, ...]
    from_sql: str
    order_sql: str
    params: dict[str, Any] = field(default_factory=dict)

    def select(self, *, typed: bool) -> str:
        """Return the SELECT; `typed` keeps SQL types, else every value is CSV-ready text."""
        parts = []
        for column in self.columns:
            expression = column.sql
            if column.kind == "timestamp":
                expression = (
                    f"to_char(({expression}) AT TIME ZONE 'UTC', "
                    '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
                )
            elif column.kind == "bool" and not typed:
                # bool::text is 'true'/'false'; COPY alone would write 't'/'f'.
                expression = f"({expression})::text"
            parts.append(f'{expression} AS "{column.name}"')
        return f"SELECT {', '.join(parts)} {self.from_sql} {self.order_sql}"

    def copy_sql(self, *, header: bool = True) -> str:
        """Return the `COPY ... TO STDOUT` whose output is the CSV export, byte for byte."""
        options = "FORMAT csv, HEADER true" if header else "FORMAT csv"
        return f"COPY ({self.select(typed=False)}) TO STDOUT WITH ({options})"


def _vote_params(*, study: Study, release: VoteRelease) -> dict[str, Any]:
    sets = sorted(release.labels_by_set)
    return {
        "study_id": study.pk,
        "study_slug": study.slug,
        "rater_ids": list(release.pseudonyms),
        "pseudonyms": list(release.pseudonyms.values()),
        "cohort_sets": sets,
        "cohort_labels": [release.labels_by_set[paths] for paths in sets],
    }


def votes_long_query(*, study: Study, release: VoteRelease | None = None) -> VoteQuery:
    """Return the long-form query: one row per vote and criterion, by vote then criterion."""
    release = release or votes_release(study=study)
    tables = _tables()
    from_sql = (
        "FROM {answer} an JOIN {vote} v ON v.id = an.vote_id "
        "JOIN {criterion} c ON c.id = an.criterion_id" + _VOTE_JOINS + "WHERE v.study_id = "
        "%(study_id)s"
    ).format(**tables)
    return VoteQuery(
        columns=(*_VOTE_HEAD, *_VOTE_CRITERION, *_VOTE_TAIL),
        from_sql=from_sql,
        order_sql="ORDER BY v.id, c.position, c.id",
        params=_vote_params(study=study, release=release),
    )


def _wide_criterion_columns(*, study: Study) -> list[tuple[Column, int]]:
    taken = {column.name for column in (*_VOTE_HEAD, *_VOTE_TAIL)}
    columns = []
    for criterion in study.criteria.order_by("position", "id"):
        # A key that collides with a fixed column keeps its meaning under a prefixed name.
        name = criterion.key if criterion.key not in taken else f"criterion_{criterion.key}"
        column = Column(
            name,
            "text",
            f"The answer to '{criterion.question}' in variant terms: a, b, tie or skip "
            "(empty if the vote has no answer to it).",
            f'w."{name}"',
        )
        columns.append((column, criterion.pk))
    return columns


def votes_wide_query(*, study: Study, release: VoteRelease | None = None) -> VoteQuery:
    """Return the wide-form query: one row per vote, one column per criterion's answer."""
    release = release or votes_release(study=study)
    tables = _tables()
    criteria = _wide_criterion_columns(study=study)
    # Criterion ids come from the database as integers, so inlining them is safe.
    pivots = ", ".join(
        f'max(an.choice) FILTER (WHERE an.criterion_id = {int(pk)}) AS "{column.name}"'
        for column, pk in criteria
    )
    pivot_sql = (
        f"LEFT JOIN (SELECT an.vote_id{', ' + pivots if pivots else ''} FROM {{answer}} an "
        "JOIN {vote} v2 ON v2.id = an.vote_id WHERE v2.study_id = %(study_id)s "
        "GROUP BY an.vote_id) w ON w.vote_id = v.id "
    ).format(**tables)
    from_sql = (
        "FROM {vote} v" + _VOTE_JOINS + pivot_sql + "WHERE v.study_id = %(study_id)s"
    ).format(**tables)
    return VoteQuery(
        columns=(*_VOTE_HEAD, *(column for column, _ in criteria), *_VOTE_TAIL),
        from_sql=from_sql,
        order_sql="ORDER BY v.id",
        params=_vote_params(study=study, release=release),
    )


def _copy_out(
    sql: str, params: dict[str, Any], *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Run `COPY (...) TO STDOUT` and yield its output in chunks of about `chunk_bytes`.

    PostgreSQL sends one message per row and a chunk is always whole messages, so every chunk
    ends at the end of a row.
    """
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql, params) as copy:
        buffer = bytearray()
        for data in copy:
            buffer += data
            if len(buffer) >= chunk_bytes:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


@contextmanager
def _export_snapshot() -> Iterator[None]:
    """Read a vote export in one read-only snapshot, without JIT.

    The pseudonyms and labels are computed by one query and the rows read by the next; in one
    repeatable-read snapshot a rater who votes in between cannot fall between the two. Inside
    an outer transaction (a test) the outer one's snapshot serves.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if outermost:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # Compiling the one long query costs seconds and saves nothing.
            cursor.execute("SET LOCAL jit = off")
        yield


def _votes_csv(query: VoteQuery) -> Iterator[bytes]:
    return _copy_out(query.copy_sql(), query.params)


def _votes_jsonl(query: VoteQuery) -> Iterator[bytes]:
    # row_to_json escapes every control character, so with CSV's delimiter and quote set to
    # two of them (unit and record separators) COPY never quotes a value: each row comes out
    # as its JSON text and a newline.
    sql = (
        f"COPY (SELECT row_to_json(t) FROM ({query.select(typed=True)}) t) TO STDOUT "
        "WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"
    )
    return _copy_out(sql, query.params)


def _votes_parquet(query: VoteQuery) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    schema = pa.schema([(column.name, _arrow_type(column.kind)) for column in query.columns])
    # One thread: a pool of parsing threads keeps an arena each, for no gain on small blocks.
    read_options = pa_csv.ReadOptions(column_names=schema.names, use_threads=False)
    parse_options = pa_csv.ParseOptions(newlines_in_values=True)
    # COPY writes NULL unquoted and an empty string as "": keep that difference.
    convert_options = pa_csv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        true_values=["true"],
        false_values=["false"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    sql = query.copy_sql(header=False)

    def batches() -> Iterator:
        # Each chunk is whole rows, so each parses on its own, here in this thread: pyarrow's
        # streaming reader would pull from another thread, where Django's connection is not
        # this one.
        for block in _copy_out(sql, query.params, chunk_bytes=1 << 20):
            table = pa_csv.read_csv(
                pa.BufferReader(block),
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            yield from table.to_batches()

    return _parquet_stream(schema, batches())


class _Drain:
    """A write-only file that keeps what was written until it is taken, for ParquetWriter."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _parquet_stream(schema, batches: Iterable) -> Iterator[bytes]:
    """Write record batches as Parquet row groups, yielding the bytes as each group is done."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Drain()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    pending: list = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= PARQUET_ROW_GROUP:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
            pending, pending_rows = [], 0
            if data := sink.take():
                yield data
    if pending:
        writer.write_table(pa.Table.from_batches(pending, schema=schema))
    writer.close()
    yield sink.take()


# The aggregate tables: a few thousand rows at most, built in Python from the stored scores.

SCORE_COLUMNS = (
    Column("cohort", "text", "The cohort path; a parent counts every rater of its children."),
    Column("criterion", "text", "The criterion's key (its question is in the card)."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b; shares are of b."),
    Column(
        "label",
        "text",
        "consensus, split, contested or insufficient (fewer than k raters), derived from the "
        "statistics with the study's thresholds; empty where the row is suppressed as a "
        "complement.",
    ),
    Column(
        "suppressed",
        "text",
        "Empty if shown; below_k (fewer than k raters) or complementary (hidden so that no "
        "small cohort can be derived as parent minus shown children). Suppressed rows carry "
        "no numbers.",
    ),
    Column("n_raters", "int", "Raters with a vote in the cell."),
    Column("n_votes", "int", "Votes in the cell (count_a + count_tie + count_b + count_skip)."),
    Column("count_a", "int", "Votes for variant a."),
    Column("count_tie", "int", "Votes for both equally."),
    Column("count_b", "int", "Votes for variant b."),
    Column("count_skip", "int", "Can't-judge answers: counted, left out of every statistic."),
    Column("share_b", "float", "Decisive win share of b: b / (a + b)."),
    Column("share_b_low", "float", "2.5% bound of share_b, rater-cluster bootstrap."),
    Column("share_b_high", "float", "97.5% bound of share_b, rater-cluster bootstrap."),
    Column("share_b_ties_half", "float", "Share of b with ties as half: (b + tie/2) / (a+tie+b)."),
    Column("share_b_ties_half_low", "float", "2.5% bound of share_b_ties_half."),
    Column("share_b_ties_half_high", "float", "97.5% bound of share_b_ties_half."),
    Column("alpha", "float", "Krippendorff's alpha, ordinal, within the cohort."),
    Column(
        "ndfu", "float", "Normalised distance from unimodality (0 unimodal, 1 a 50/0/50 split)."
    ),
    Column("agreement", "float", "Van der Eijk's A (+1 consensus, 0 uniform, -1 polarised)."),
    Column("heterogeneity_p", "float", "Rater heterogeneity permutation p (split versus noise)."),
    Column("cohesion_in", "float", "GRASP in-group cohesion: pairwise agreement within."),
    Column("cohesion_cross", "float", "GRASP cross-group cohesion: with raters outside."),
    Column("gai", "float", "Group association index: cohesion_in / cohesion_cross."),
    Column("gai_p", "float", "Label-permutation p of the GAI."),
    Column("gai_q", "float", "Benjamini-Hochberg q of gai_p across the study's cohorts."),
)

SPLIT_COLUMNS = (
    Column(
        "kind",
        "text",
        "criterion (one criterion's distribution) or coherence (representation answers where "
        "the rater chose one image as both more stereotypical and more offensive).",
    ),
    Column("cohort", "text", "The cohort path; a parent counts every rater of its children."),
    Column("criterion", "text", "The criterion's key; representation for coherence rows."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b."),
    Column("label", "text", "As in the scores table (criterion rows only)."),
    Column("suppressed", "text", "Empty if shown; below_k or complementary, with no numbers."),
    Column("n_raters", "int", "Raters in the row."),
    Column("n_votes", "int", "Votes in the row."),
    Column("share_a", "float", "Share of a among a, tie and b (criterion rows)."),
    Column("share_tie", "float", "Share of ties among the answers counted."),
    Column("share_b", "float", "Share of b among a, tie and b (criterion rows)."),
    Column(
        "share_same",
        "float",
        "Coherence rows: share calling the stereotypical, offensive image the better "
        "representation too.",
    ),
    Column("share_other", "float", "Coherence rows: share calling the other image better."),
    Column("ndfu", "float", "Normalised distance from unimodality of the distribution."),
    Column("agreement", "float", "Van der Eijk's A (criterion rows)."),
    Column("alpha", "float", "Krippendorff's alpha, ordinal (criterion rows)."),
    Column("heterogeneity_p", "float", "Rater heterogeneity permutation p (criterion rows)."),
    Column("gai", "float", "Group association index (criterion rows)."),
    Column("gai_q", "float", "Benjamini-Hochberg q of the GAI's p (criterion rows)."),
)


_SCORE_FIELDS = (
    "n_raters",
    "n_votes",
    "count_a",
    "count_tie",
    "count_b",
    "count_skip",
    *STATISTIC_FIELDS,
)


@dataclass
class ScoreTables:
    """The latest run's rows, labelled and suppressed, as every aggregate export shows them."""

    run: ScoreRun | None
    scores: list[dict[str, Any]]
    coherence: list[dict[str, Any]]

    def suppressed(self) -> list[tuple[str, str, str, str, str]]:
        """(kind, cohort, variant_a, variant_b, reason) of every suppressed cohort, once."""
        seen = {
            (kind, row["cohort"], row["variant_a"], row["variant_b"], row["suppressed"])
            for kind, rows in (("scores", self.scores), ("coherence", self.coherence))
            for row in rows
            if row["suppressed"]
        }
        return sorted(seen)


def score_tables(*, study: Study, run: ScoreRun | None = None) -> ScoreTables:
    """Read a run's Score and CoherenceScore rows and apply k with complementary suppression.

    Per variant pair, every criterion is a slice of the same cohorts, so one hidden set serves
    them all (`cohort_tables_suppress`); the coherence table, whose raters are a subset, hides
    at least those cohorts and whatever its own counts need on top.
    """
    run = run or scores_latest(study=study)
    if run is None:
        return ScoreTables(run=None, scores=[], coherence=[])
    k = study.min_cohort_size
    thresholds = study_thresholds(study=study)
    scores = list(
        Score.objects.filter(run=run)
        .order_by("cohort__path", "criterion__position", "criterion__key", "variant_a__name")
        .values(
            "cohort__path",
            "criterion__key",
            "variant_a__name",
            "variant_b__name",
            *_SCORE_FIELDS,
        )
    )
    coherence = list(
        CoherenceScore.objects.filter(run=run)
        .order_by("cohort__path", "variant_a__name", "variant_b__name")
        .values(
            "cohort__path",
            "variant_a__name",
            "variant_b__name",
            "n_raters",
            "same",
            "tie",
            "other",
            "ndfu",
        )
    )
    slices: dict[tuple[str, str], dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in scores:
        variants = (row["variant_a__name"], row["variant_b__name"])
        slices[variants][row["criterion__key"]][row["cohort__path"]] = row["n_raters"]
    hidden = {
        variants: cohort_tables_suppress(list(by_criterion.values()), k=k)
        for variants, by_criterion in slices.items()
    }

    score_rows = []
    for row in scores:
        variants = (row["variant_a__name"], row["variant_b__name"])
        reason = hidden[variants].get(row["cohort__path"], "")
        out = {
            "cohort": row["cohort__path"],
            "criterion": row["criterion__key"],
            "variant_a": variants[0],
            "variant_b": variants[1],
            "label": "insufficient" if reason == SUPPRESSED_BELOW_K else None,
            "suppressed": reason,
        }
        if reason:
            out.update(dict.fromkeys(_SCORE_FIELDS))
        else:
            out["label"] = score_label(
                n_raters=row["n_raters"],
                histogram=(row["count_a"], row["count_tie"], row["count_b"]),
                ndfu=row["ndfu"],
                agreement=row["agreement"],
                heterogeneity_p=row["heterogeneity_p"],
                thresholds=thresholds,
            )
            out.update({name: _finite(row[name]) for name in _SCORE_FIELDS})
        score_rows.append(out)

    coherence_slices: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for row in coherence:
        variants = (row["variant_a__name"], row["variant_b__name"])
        coherence_slices[variants][row["cohort__path"]] = row["n_raters"]
    coherence_hidden = {
        variants: cohort_cells_suppress(by_cohort, k=k, force=hidden.get(variants, {}))
        for variants, by_cohort in coherence_slices.items()
    }
    coherence_rows = []
    for row in coherence:
        variants = (row["variant_a__name"], row["variant_b__name"])
        reason = coherence_hidden[variants].get(row["cohort__path"], "")
        out = {
            "cohort": row["cohort__path"],
            "variant_a": variants[0],
            "variant_b": variants[1],
            "suppressed": reason,
            "n_raters": None,
            "same": None,
            "tie": None,
            "other": None,
            "ndfu": None,
        }
        if not reason:
            out.update(
                n_raters=row["n_raters"],
                same=row["same"],
                tie=row["tie"],
                other=row["other"],
                ndfu=_finite(row["ndfu"]),
            )
        coherence_rows.append(out)
    return ScoreTables(run=run, scores=score_rows, coherence=coherence_rows)


def _finite(value):
    """NaN and infinities have no JSON spelling; they are written as empty."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _share(part: int | None, whole: int) -> float | None:
    return None if part is None or whole <= 0 else part / whole


def split_report_rows(tables: ScoreTables) -> list[dict[str, Any]]:
    """Flatten the score and coherence rows into the split report's rows."""
    rows = []
    for row in tables.scores:
        counted = sum(row[name] or 0 for name in ("count_a", "count_tie", "count_b"))
        rows.append(
            {
                "kind": "criterion",
                "cohort": row["cohort"],
                "criterion": row["criterion"],
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "label": row["label"],
                "suppressed": row["suppressed"],
                "n_raters": row["n_raters"],
                "n_votes": row["n_votes"],
                "share_a": _share(row["count_a"], counted),
                "share_tie": _share(row["count_tie"], counted),
                "share_b": _share(row["count_b"], counted),
                "share_same": None,
                "share_other": None,
                "ndfu": row["ndfu"],
                "agreement": row["agreement"],
                "alpha": row["alpha"],
                "heterogeneity_p": row["heterogeneity_p"],
                "gai": row["gai"],
                "gai_q": row["gai_q"],
            }
        )
    for row in tables.coherence:
        counted = sum(row[name] or 0 for name in ("same", "tie", "other"))
        rows.append(
            {
                "kind": "coherence",
                "cohort": row["cohort"],
                "criterion": "representation",
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "label": None,
                "suppressed": row["suppressed"],
                "n_raters": row["n_raters"],
                "n_votes": None if row["suppressed"] else counted,
                "share_a": None,
                "share_tie": _share(row["tie"], counted),
                "share_b": None,
                "share_same": _share(row["same"], counted),
                "share_other": _share(row["other"], counted),
                "ndfu": row["ndfu"],
                "agreement": None,
                "alpha": None,
                "heterogeneity_p": None,
                "gai": None,
                "gai_q": None,
            }
        )
    return rows


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def _rows_csv(columns: Sequence[Column], rows: Iterable[dict]) -> Iterator[bytes]:
    writer = csv.writer(_Echo())
    yield writer.writerow([column.name for column in columns]).encode()
    for row in rows:
        yield writer.writerow([_csv_cell(row[column.name]) for column in columns]).encode()


def _rows_jsonl(columns: Sequence[Column], rows: Iterable[dict]) -> Iterator[bytes]:
    for row in rows:
        record = {column.name: row[column.name] for column in columns}
        yield (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _rows_parquet(columns: Sequence[Column], rows: list[dict]) -> Iterator[bytes]:
    import pyarrow as pa

    schema = pa.schema([(column.name, _arrow_type(column.kind)) for column in columns])
    table = pa.Table.from_pylist(
        [{column.name: row[column.name] for column in columns} for row in rows], schema=schema
    )
    return _parquet_stream(schema, table.to_batches(max_chunksize=PARQUET_ROW_GROUP))


_ROW_WRITERS: dict[str, Callable[[Sequence[Column], list[dict]], Iterator[bytes]]] = {
    "csv": _rows_csv,
    "jsonl": _rows_jsonl,
    "parquet": _rows_parquet,
}
_VOTE_WRITERS: dict[str, Callable[[VoteQuery], Iterator[bytes]]] = {
    "csv": _votes_csv,
    "jsonl": _votes_jsonl,
    "parquet": _votes_parquet,
}


def export_check(*, table: str, fmt: str) -> None:
    """Raise ExportError unless `table` and `fmt` name an export."""
    if table not in TABLES:
        raise ExportError(f"Unknown table {table!r}: use one of {', '.join(TABLES)}.")
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")


def export_columns(*, study: Study, table: str) -> tuple[Column, ...]:
    """Return the columns of an export, in order, with their meanings."""
    export_check(table=table, fmt="csv")
    if table == "votes_long":
        return (*_VOTE_HEAD, *_VOTE_CRITERION, *_VOTE_TAIL)
    if table == "votes_wide":
        criteria = tuple(column for column, _ in _wide_criterion_columns(study=study))
        return (*_VOTE_HEAD, *criteria, *_VOTE_TAIL)
    return SCORE_COLUMNS if table == "scores" else SPLIT_COLUMNS


def export_stream(*, study: Study, table: str, fmt: str) -> Iterator[bytes]:
    """Return an export's bytes as an iterator, in constant memory.

    `table` is one of TABLES and `fmt` one of FORMATS (else ExportError, at once). Nothing is
    read until the first chunk is asked for, so a view can hand this straight to a
    StreamingHttpResponse.
    """
    export_check(table=table, fmt=fmt)
    return _export_chunks(study=study, table=table, fmt=fmt)


def _export_chunks(*, study: Study, table: str, fmt: str) -> Iterator[bytes]:
    if table in ("votes_long", "votes_wide"):
        build = votes_long_query if table == "votes_long" else votes_wide_query
        with _export_snapshot():
            yield from _VOTE_WRITERS[fmt](build(study=study))
        return
    tables = score_tables(study=study)
    if table == "scores":
        yield from _ROW_WRITERS[fmt](SCORE_COLUMNS, tables.scores)
    else:
        yield from _ROW_WRITERS[fmt](SPLIT_COLUMNS, split_report_rows(tables))


def votes_copy_statement(*, study: Study, table: str = "votes_long") -> tuple[str, dict]:
    """Return the COPY statement, and its parameters, that a vote table's CSV export streams.

    bench/scores.py times it on its own as the floor the CSV export is measured against.
    """
    build = {"votes_long": votes_long_query, "votes_wide": votes_wide_query}[table]
    query = build(study=study)
    return query.copy_sql(), query.params


def export_filename(*, study: Study, table: str, fmt: str) -> str:
    """Return the download name of an export, e.g. `my-study-votes_long.csv`."""
    export_check(table=table, fmt=fmt)
    return f"{study.slug}-{table}.{fmt}"


def dataset_card(*, study: Study, table: str) -> str:
    """Return the Markdown card that goes with an export (see ratings.dataset_card)."""
    from ratings.dataset_card import dataset_card_build

    return dataset_card_build(study=study, table=table)


def votes_long_csv(*, study: Study) -> Iterator[str]:
    """Yield the long-form vote export as CSV text, header first."""
    for chunk in export_stream(study=study, table="votes_long", fmt="csv"):
        # COPY sends one message per row and chunks are whole messages, so no chunk ends
        # inside a character.
        yield chunk.decode()
