"""Prepare the environment before Django loads its settings.

Every entry point (manage.py, the Celery app, the WSGI app) calls `environment_prepare()`
first, so the same settings reach each of them:

- `var/.env`, written by `make demo`, is read when it exists; the environment wins over it.
- Without DATABASE_URL, Polyphony uses the embedded PostgreSQL in `var/pgdata`, started here
  if it is not running and stopped when the last process that started it this way exits.

No Django import here: settings do not exist yet.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    return Path(os.environ.get("POLYPHONY_VAR_DIR") or BASE_DIR / "var")


def environment_prepare() -> None:
    """Read var/.env and point DATABASE_URL at the embedded server when it is unset."""
    from dotenv import load_dotenv

    load_dotenv(var_dir() / ".env", override=False)
    if not os.environ.get("DATABASE_URL"):
        from webapp.embedded_postgres import EmbeddedPostgresError, use_when_unset

        try:
            use_when_unset(var_dir() / "pgdata")
        except EmbeddedPostgresError as exc:
            # Settings then report DATABASE_URL as unset (polyphony.E003) with this reason.
            os.environ["POLYPHONY_EMBEDDED_DB_ERROR"] = str(exc)


DEMO_ENV = """\
# Written once by `make demo`: the settings the demo runs with. manage.py, the Celery worker and
# the WSGI app read this file when it exists; a variable set in the environment wins over it.
DEBUG=true
SECRET_KEY={secret_key}
# DATABASE_URL is unset: the embedded PostgreSQL, data in var/pgdata.
# The Celery broker is a folder: var/broker.
CELERY_BROKER_URL=filesystem://
"""


def demo_env_write() -> Path:
    """Write var/.env for the demo unless it exists; keep its key across runs (sessions last)."""
    path = var_dir() / ".env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEMO_ENV.format(secret_key=secrets.token_urlsafe(48)))
        path.chmod(0o600)
    return path


if __name__ == "__main__":
    # `python -m webapp.bootstrap demo-env`: what scripts/demo runs before anything else.
    if sys.argv[1:] != ["demo-env"]:
        sys.exit("usage: python -m webapp.bootstrap demo-env")
    print(demo_env_write())
