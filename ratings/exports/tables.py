"""Exports of a study for researchers: votes (long and wide), scores, the cohort split report.

Every export streams in constant memory. The vote tables are written by PostgreSQL itself:
`COPY (query) TO STDOUT` renders the CSV, a JSON object per row for JSONL, and a CSV that
pyarrow re-encodes batch by batch for Parquet, so millions of rows pass through Python as a few
large buffers, never as row objects. Privacy is applied before a byte leaves: raters appear
under study-salted pseudonyms, cohort labels only where they meet k
(`ratings.exports.privacy.cohort_labels_release`), and aggregate tables hide small cohorts with
complementary suppression (`ratings.exports.privacy.cohort_tables_suppress`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ratings.exports.faction_tables import (
    FACTION_COLUMNS,
    FACTION_MEMBER_COLUMNS,
    faction_member_rows,
    faction_rows,
)
from ratings.exports.formats import Column, rows_csv, rows_jsonl, rows_parquet
from ratings.exports.score_tables import (
    SCORE_COLUMNS,
    SPLIT_COLUMNS,
    score_tables,
    split_report_rows,
)
from ratings.exports.votes import (
    VOTE_CRITERION,
    VOTE_HEAD,
    VOTE_TAIL,
    VOTE_WRITERS,
    export_snapshot,
    votes_long_query,
    votes_wide_query,
    wide_criterion_columns,
)
from ratings.models import Study

TABLES = ("votes_long", "votes_wide", "scores", "splits", "factions", "faction_members")
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
    "factions": "factions of every split or dissent row (size, lean with its interval, answers)",
    "faction_members": "each rater's faction in every split or dissent row, under the rater's "
    "pseudonym, with its posterior probability",
}


class ExportError(ValueError):
    """An export that does not exist: an unknown table or format."""


_ROW_WRITERS: dict[str, Callable[[Sequence[Column], list[dict]], Iterator[bytes]]] = {
    "csv": rows_csv,
    "jsonl": rows_jsonl,
    "parquet": rows_parquet,
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
        return (*VOTE_HEAD, *VOTE_CRITERION, *VOTE_TAIL)
    if table == "votes_wide":
        criteria = tuple(column for column, _ in wide_criterion_columns(study=study))
        return (*VOTE_HEAD, *criteria, *VOTE_TAIL)
    return {
        "scores": SCORE_COLUMNS,
        "splits": SPLIT_COLUMNS,
        "factions": FACTION_COLUMNS,
        "faction_members": FACTION_MEMBER_COLUMNS,
    }[table]


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
        with export_snapshot():
            yield from VOTE_WRITERS[fmt](build(study=study))
        return
    tables = score_tables(study=study)
    if table == "scores":
        yield from _ROW_WRITERS[fmt](SCORE_COLUMNS, tables.scores)
    elif table == "splits":
        yield from _ROW_WRITERS[fmt](SPLIT_COLUMNS, split_report_rows(tables))
    elif table == "factions":
        rows = faction_rows(tables=tables, k=study.min_cohort_size)
        yield from _ROW_WRITERS[fmt](FACTION_COLUMNS, rows)
    else:
        rows = faction_member_rows(study=study, tables=tables, k=study.min_cohort_size)
        yield from _ROW_WRITERS[fmt](FACTION_MEMBER_COLUMNS, rows)


def export_filename(*, study: Study, table: str, fmt: str) -> str:
    """Return the download name of an export, e.g. `my-study-votes_long.csv`."""
    export_check(table=table, fmt=fmt)
    return f"{study.slug}-{table}.{fmt}"


def votes_long_csv(*, study: Study) -> Iterator[str]:
    """Yield the long-form vote export as CSV text, header first."""
    for chunk in export_stream(study=study, table="votes_long", fmt="csv"):
        # COPY sends one message per row and chunks are whole messages, so no chunk ends
        # inside a character.
        yield chunk.decode()
