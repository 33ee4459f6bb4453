"""A bad setting stops the start with a clear message, as a system check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "k" * 50


def _check(**environ: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in environ}
    env.update({key: value for key, value in environ.items() if value is not None})
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_secret_key_with_debug_off_stops_the_start():
    result = _check(DEBUG="false", SECRET_KEY="")
    assert result.returncode != 0
    assert "polyphony.E001" in result.stderr
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_secret_key_is_allowed_with_debug_on():
    result = _check(DEBUG="true", SECRET_KEY="")
    assert result.returncode == 0, result.stderr


def test_debug_must_be_true_or_false():
    result = _check(DEBUG="maybe", SECRET_KEY=GOOD_KEY)
    assert result.returncode != 0
    assert "polyphony.E002" in result.stderr
    assert "DEBUG must be true or false, got 'maybe'" in result.stderr


def test_malformed_database_url_is_reported_not_guessed():
    result = _check(DEBUG="false", SECRET_KEY=GOOD_KEY, DATABASE_URL="nosuchdb://x/y")
    assert result.returncode != 0
    assert "polyphony.E003" in result.stderr


def test_unsupported_broker_is_reported():
    result = _check(DEBUG="false", SECRET_KEY=GOOD_KEY, CELERY_BROKER_URL="kafka://x")
    assert result.returncode != 0
    assert "polyphony.E004" in result.stderr


def test_every_bad_setting_is_reported_at_once():
    result = _check(DEBUG="false", SECRET_KEY="", POLYPHONY_ASSIGNMENT_MINUTES="soon")
    assert "polyphony.E001" in result.stderr
    assert "POLYPHONY_ASSIGNMENT_MINUTES must be a whole number" in result.stderr


def test_worker_refuses_to_start_on_a_bad_setting():
    env = {k: v for k, v in os.environ.items()}
    env.update(DEBUG="false", SECRET_KEY="")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "webapp",
            "worker",
            "-Q",
            "gpu",
            "--pool",
            "solo",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "polyphony.E001" in result.stderr
