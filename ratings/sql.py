"""SQL helpers shared by the rating statements: a preparing cursor, small runners, table names.

The rating page and the vote run on every request a rater makes, and the ORM spent more time
compiling their statements than PostgreSQL spent running them; these statements are written by
hand, in PostgreSQL's SQL: the one dialect the demo, the tests and production all run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from generation.models import Image, Prompt
from ratings.models import (
    Answer,
    Assignment,
    Cohort,
    Criterion,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Study,
    Vote,
)
from ratings.texts import language_active, text_language_codes


def localized(column: str, language: str | None = None, *, study_language: str = "") -> str:
    """Return an expression for a translated column (`alias.field`) in the active language.

    The language's own text (django-modeltranslation's `field_xx` column) when there is one,
    else, given `study_language` (the expression of the study's language column, such as
    `study.language`), the study's own language's, else the site default's, else the field as
    first written (ratings/texts.py). The languages are part of the SQL text: a statement is
    prepared per connection and per rater language.
    """
    language = language or language_active()
    columns = text_language_codes()  # a language without text columns reads the study's
    parts = [f"NULLIF({column}_{language}, '')"] if language in columns else []
    others = [code for code in columns if code != language]
    if study_language and others:
        whens = " ".join(f"WHEN '{code}' THEN NULLIF({column}_{code}, '')" for code in others)
        parts.append(f"CASE {study_language} {whens} END")
    if language != settings.LANGUAGE_CODE:
        parts.append(f"NULLIF({column}_{settings.LANGUAGE_CODE}, '')")
    return f"COALESCE({', '.join(parts)}, {column})"


@lru_cache(maxsize=512)
def sql_compact(sql: str) -> str:
    """Collapse the whitespace of a hand-written statement.

    psycopg caches its parsing of a statement only up to 4 KB, and the window read is longer
    with its indentation; PostgreSQL reads fewer bytes too.
    """
    return " ".join(sql.split())


class _RatingCursor(CursorWrapper):
    def execute(self, sql, params=None):
        return super().execute(sql_compact(sql), params)


class _RatingDebugCursor(CursorDebugWrapper):
    """Log a statement as Django logs its own: with its parameters in place."""

    def execute(self, sql, params=None):
        sql = sql_compact(sql)
        # Django reads the logged text from the driver, which has `$1` for server-bound values.
        with self.debug_sql(self.db.ops.compose_sql(sql, params), params):
            return CursorWrapper.execute(self, sql, params)


@cache
def _preparing_cursor_class() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Prepare every statement: Django turns psycopg's automatic preparing off."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=prepare is not False, binary=binary)

    return PreparingCursor


@contextmanager
def sql_cursor() -> Iterator:
    """Yield a cursor for the rating statements, logged and wrapped like any Django cursor.

    On PostgreSQL it binds parameters on the server and prepares each statement once per
    connection, so PostgreSQL stops planning it afresh: planning these statements took longer
    than running them. (Django leaves psycopg's preparing off by default for poolers that
    cannot keep prepared statements, such as PgBouncer before 1.21 in transaction mode.)
    """
    db = connections[DEFAULT_DB_ALIAS]  # the proxy `connection` looks it up on every use
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Off, psycopg prepares nothing, even when asked; this high, only what is asked.
        raw.prepare_threshold = 2**31 - 1
    cursor = _preparing_cursor_class()(raw)
    if not db.in_atomic_block and getattr(raw, "_polyphony_plans", None) is None:
        # Plan each prepared statement once, for any parameters. Left to choose,
        # PostgreSQL keeps planning the window reads afresh on every run, as their costs
        # depend on the values; their plan does not (tests/test_assignment.py shows it at
        # scale). The ORM's statements are never prepared, so this changes nothing for them.
        cursor.execute("SET plan_cache_mode = force_generic_plan", prepare=False)
        raw._polyphony_plans = "generic"
    db.validate_thread_sharing()
    wrapped = (_RatingDebugCursor if db.queries_logged else _RatingCursor)(cursor, db)
    with wrapped:
        yield wrapped


def sql_fetchone(sql: str, params: Mapping) -> tuple | None:
    with sql_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def sql_fetchall(sql: str, params: Mapping) -> list[tuple]:
    with sql_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def db_datetime(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def db_uuid(value: uuid.UUID):
    return value if connection.features.has_native_uuid_field else value.hex


def sql_list(name: str, values: Sequence, params: dict) -> str:
    """Return `(%(name_0)s, …)` for an IN list, adding the values to `params`."""
    if not values:
        return "(NULL)"
    names = [f"{name}_{index}" for index in range(len(values))]
    params.update(zip(names, values, strict=True))
    return "(" + ", ".join(f"%({each})s" for each in names) + ")"


def sql_json_array(columns: str) -> str:
    return f"json_build_array({columns})"


def sql_json_rows(columns: str, source: str, order: str) -> str:
    """Return a scalar subquery: the rows `SELECT columns source` as a JSON array of arrays."""
    return f"(SELECT json_agg(json_build_array({columns}) ORDER BY {order}) {source})"


def sql_for_update_skip_locked() -> str:
    return "FOR UPDATE SKIP LOCKED"


def sql_chain(first: str, then: Sequence[str], params: dict) -> tuple | None:
    """Run data-changing statements as one; return the row the first one returns, if any.

    `first` ends in RETURNING; each statement in `then` reads that row's first column as
    `{first}` and must do nothing when it is NULL. On PostgreSQL they are one statement,
    chained WITH clauses: one round trip, atomic on its own.
    """
    clauses = [f"first AS ({first})"] + [
        f"then_{index} AS ({statement.format(first='(SELECT id FROM first)')})"
        for index, statement in enumerate(then)
    ]
    return sql_fetchone(f"WITH {', '.join(clauses)} SELECT * FROM first", params)


@cache
def db_tables() -> dict[str, str]:
    """Return the table names the hand-written rating statements use, by short name."""
    return {
        "answer": Answer._meta.db_table,
        "assignment": Assignment._meta.db_table,
        "cohort": Cohort._meta.db_table,
        "coverage": PairCoverage._meta.db_table,
        "criterion": Criterion._meta.db_table,
        "image": Image._meta.db_table,
        "pair": Pair._meta.db_table,
        "participation": Participation._meta.db_table,
        "prompt": Prompt._meta.db_table,
        "rater": Rater._meta.db_table,
        "rater_cohorts": Rater.cohorts.through._meta.db_table,
        "study": Study._meta.db_table,
        "study_cohorts": Study.cohorts.through._meta.db_table,
        "user": Rater._meta.get_field("user").related_model._meta.db_table,
        "vote": Vote._meta.db_table,
    }
