"""What the benchmarks share: environment defaults, their own database, the machine's name.

Import it before Django: it puts the repository on sys.path and sets the defaults a bench runs
with (settings module, a secret key, DEBUG off), leaving anything already set in the
environment alone.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The floor views of bench/votes.py (served from bench/floor_urls.py): name, path, and the
# tables they write, made by the bench in its own database.
FLOORS = {
    "floor-post": "/bench/floor/post",
    "floor-row": "/bench/floor/row",
    "floor-vote-row": "/bench/floor/vote-row",
}
FLOOR_TABLES = (
    "CREATE TABLE bench_floor_vote (id bigserial PRIMARY KEY, user_id bigint NOT NULL, "
    "assignment text NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE INDEX ON bench_floor_vote (user_id, assignment)",
    "CREATE TABLE bench_floor_answer (id bigserial PRIMARY KEY, vote_id bigint NOT NULL "
    "REFERENCES bench_floor_vote DEFERRABLE INITIALLY DEFERRED, criterion text NOT NULL, "
    "choice text NOT NULL, UNIQUE (vote_id, criterion))",
)


def environment_defaults(*, database: str, broker_db: int, **extra: str) -> None:
    """Set the settings a bench runs with, unless the environment says otherwise."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    if not os.environ.get("DATABASE_URL"):
        # As manage.py does: the embedded PostgreSQL, in a data folder of the benches' own.
        from webapp.embedded_postgres import start

        server = start(ROOT / "var" / "bench-pgdata").rsplit("/", 1)[0]
        os.environ["DATABASE_URL"] = f"{server}/{database}"
    os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{broker_db}")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 32)
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("POLYPHONY_STATIC_MANIFEST", "false")  # no collectstatic in a bench
    for name, value in extra.items():
        os.environ.setdefault(name, value)


def database_create(*, fresh: bool) -> None:
    """Make the database DATABASE_URL names if it is missing; with `fresh`, drop it first.

    Talks to the server's `postgres` database with psycopg, before Django is set up.
    """
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        if fresh:
            connection.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{db["NAME"]}"')


def machine() -> dict:
    """Describe the machine a result was measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "load_average": [round(value, 2) for value in load] if load else None,
    }
