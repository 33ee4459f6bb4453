"""The vote tables, long and wide: written by PostgreSQL itself, under pseudonyms and k.

`COPY (query) TO STDOUT` renders the CSV, a JSON object per row for JSONL, and a CSV that
pyarrow re-encodes batch by batch for Parquet, so millions of rows pass through Python as a
few large buffers, never as row objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from generation.models import Image, ModelVariant, Prompt
from ratings.exports.formats import FORMULA_STARTS_SQL, Column, arrow_type, parquet_stream
from ratings.exports.privacy import cohort_labels_release, rater_pseudonym
from ratings.models import Answer, Cohort, Criterion, Pair, Participation, Study, Vote

# Bytes handed to the web server at a time: large enough that a million rows are a few
# hundred writes, small enough that memory stays flat.
CHUNK_BYTES = 256 * 1024


# The vote tables. Names and order of the long form are a fixed interface (import_votes reads
# the first seven, and prompt, category and created_at).

_ATTENTION_CHECK_SQL = (
    "CASE WHEN v.kind <> 'pair' THEN v.kind WHEN p.is_attention_check THEN 'identical' ELSE '' END"
)

VOTE_HEAD = (
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
VOTE_CRITERION = (
    Column("criterion", "text", "The criterion's key (its question is in the card).", "c.key"),
    Column(
        "choice",
        "text",
        "The answer in variant terms, never screen sides: a or b (the variant the rater gave "
        "as the answer to the criterion's question), tie (both equally) or skip (can't judge).",
        "an.choice",
    ),
)
VOTE_TAIL = (
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
VOTES_LONG_COLUMNS = tuple(column.name for column in (*VOTE_HEAD, *VOTE_CRITERION, *VOTE_TAIL))


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

    def select(self, *, typed: bool, neutralise: bool = False) -> str:
        """Return the SELECT; `typed` keeps SQL types, else every value is CSV-ready text.

        `neutralise` prefixes a text value that a spreadsheet would read as a formula with an
        apostrophe (see ratings.exports.formats.csv_text).
        """
        parts = []
        for column in self.columns:
            expression = column.sql
            if neutralise and column.kind == "text":
                expression = (
                    f"(CASE WHEN left(({expression}), 1) IN {FORMULA_STARTS_SQL} "
                    f"THEN '''' || ({expression}) ELSE ({expression}) END)"
                )
            elif column.kind == "timestamp":
                expression = (
                    f"to_char(({expression}) AT TIME ZONE 'UTC', "
                    '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
                )
            elif column.kind == "bool" and not typed:
                # bool::text is 'true'/'false'; COPY alone would write 't'/'f'.
                expression = f"({expression})::text"
            parts.append(f'{expression} AS "{column.name}"')
        return f"SELECT {', '.join(parts)} {self.from_sql} {self.order_sql}"

    def copy_sql(self, *, header: bool = True, neutralise: bool = False) -> str:
        """Return the `COPY ... TO STDOUT` whose output is the CSV export, byte for byte.

        The CSV export neutralises formula cells; the Parquet writer reads this CSV back and
        keeps the values as they are.
        """
        options = "FORMAT csv, HEADER true" if header else "FORMAT csv"
        select = self.select(typed=False, neutralise=neutralise)
        return f"COPY ({select}) TO STDOUT WITH ({options})"


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
        columns=(*VOTE_HEAD, *VOTE_CRITERION, *VOTE_TAIL),
        from_sql=from_sql,
        order_sql="ORDER BY v.id, c.position, c.id",
        params=_vote_params(study=study, release=release),
    )


def wide_criterion_columns(*, study: Study) -> list[tuple[Column, int]]:
    """Return the wide form's column of each criterion, with the criterion's id."""
    taken = {column.name for column in (*VOTE_HEAD, *VOTE_TAIL)}
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
    criteria = wide_criterion_columns(study=study)
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
        columns=(*VOTE_HEAD, *(column for column, _ in criteria), *VOTE_TAIL),
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
def export_snapshot() -> Iterator[None]:
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
    return _copy_out(query.copy_sql(neutralise=True), query.params)


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

    schema = pa.schema([(column.name, arrow_type(column.kind)) for column in query.columns])
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

    return parquet_stream(schema, batches())


def votes_copy_statement(*, study: Study, table: str = "votes_long") -> tuple[str, dict]:
    """Return the COPY statement, and its parameters, that a vote table's CSV export streams.

    bench/scores.py times it on its own as the floor the CSV export is measured against.
    """
    build = {"votes_long": votes_long_query, "votes_wide": votes_wide_query}[table]
    query = build(study=study)
    return query.copy_sql(neutralise=True), query.params


VOTE_WRITERS: dict[str, Callable[[VoteQuery], Iterator[bytes]]] = {
    "csv": _votes_csv,
    "jsonl": _votes_jsonl,
    "parquet": _votes_parquet,
}
