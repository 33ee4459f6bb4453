"""The file formats of the exports: columns, and CSV, JSONL and Parquet writers of rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

# Rows per Parquet row group: pyarrow holds one group in memory while it encodes it.
PARQUET_ROW_GROUP = 32 * 1024


@dataclass(frozen=True)
class Column:
    """One column of an export: its name, type, meaning and, for vote tables, its SQL."""

    name: str
    kind: str  # text | int | float | bool | timestamp
    meaning: str
    sql: str = ""


def arrow_type(kind: str):
    """Return the Arrow type of a column kind."""
    import pyarrow as pa

    return {
        "text": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


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


def parquet_stream(schema, batches: Iterable) -> Iterator[bytes]:
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


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


# A cell a spreadsheet reads as a formula begins with one of these (OWASP, CSV injection);
# every CSV export writes such a text cell with a leading apostrophe, which spreadsheets show
# as text and hide. Imports of Polyphony's own CSV take the apostrophe off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_STARTS_SQL = "('=', '+', '-', '@', E'\\t', E'\\r')"


def csv_text(value: str) -> str:
    """Return a text cell as a CSV export writes it: a formula's start neutralised."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_text_read(value: str) -> str:
    """Undo csv_text on a cell read back from a Polyphony CSV export."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _csv_cell(value: object) -> object:
    if isinstance(value, str):
        return csv_text(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def rows_csv(columns: Sequence[Column], rows: Iterable[dict]) -> Iterator[bytes]:
    """Write rows as CSV, header first."""
    writer = csv.writer(_Echo())
    yield writer.writerow([column.name for column in columns]).encode()
    for row in rows:
        yield writer.writerow([_csv_cell(row[column.name]) for column in columns]).encode()


def rows_jsonl(columns: Sequence[Column], rows: Iterable[dict]) -> Iterator[bytes]:
    """Write rows as JSON Lines, one object per row."""
    for row in rows:
        record = {column.name: row[column.name] for column in columns}
        yield (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode()


def rows_parquet(columns: Sequence[Column], rows: list[dict]) -> Iterator[bytes]:
    """Write rows as Parquet, a row group at a time."""
    import pyarrow as pa

    schema = pa.schema([(column.name, arrow_type(column.kind)) for column in columns])
    table = pa.Table.from_pylist(
        [{column.name: row[column.name] for column in columns} for row in rows], schema=schema
    )
    return parquet_stream(schema, table.to_batches(max_chunksize=PARQUET_ROW_GROUP))
