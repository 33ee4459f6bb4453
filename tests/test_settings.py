"""A bad setting stops the start with a clear message, as a system check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_database_other_than_postgresql_is_refused():
    result = _check(DEBUG="false", SECRET_KEY=GOOD_KEY, DATABASE_URL="sqlite:///var/x.sqlite3")
    assert result.returncode != 0
    assert "polyphony.E003" in result.stderr
    assert "must name a PostgreSQL database" in result.stderr


def test_manage_py_without_database_url_runs_on_the_embedded_server(tmp_path):
    # A var folder of its own: manage.py starts the embedded PostgreSQL there, runs the
    # command against it, and stops it again as the only process that asked for it.
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         "from django.db import connection; connection.ensure_connection(); "
         "print(connection.vendor, connection.settings_dict['HOST'])"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "", "POLYPHONY_VAR_DIR": str(tmp_path),
             "DEBUG": "false", "SECRET_KEY": GOOD_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["postgresql", str(tmp_path / "pgdata")]
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()  # stopped with its last user


def _setting_with_var_dir(var_dir: Path, name: str, **environ: str) -> str:
    env = {**os.environ, "POLYPHONY_VAR_DIR": str(var_dir), "DEBUG": "false", **environ}
    env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         f"from django.conf import settings; print(settings.{name})"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("port", ["smtp", "0", "70000"])
def test_an_email_port_that_is_not_a_port_stops_the_start(port):
    result = _check(DEBUG="false", SECRET_KEY=GOOD_KEY, EMAIL_PORT=port)
    assert result.returncode != 0
    assert "polyphony.E008" in result.stderr
    assert "EMAIL_PORT must be" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_writes_its_mails_to_var_mail_when_no_mail_server_is_set(tmp_path):
    environ = {"DEBUG": "true", "EMAIL_HOST": "", "EMAIL_BACKEND": ""}
    backend = _setting_with_var_dir(tmp_path, "EMAIL_BACKEND", **environ)
    assert backend == "django.core.mail.backends.filebased.EmailBackend"
    assert _setting_with_var_dir(tmp_path, "EMAIL_FILE_PATH", **environ) == str(tmp_path / "mail")
    production = _setting_with_var_dir(tmp_path, "EMAIL_BACKEND", EMAIL_HOST="")
    assert production == "django.core.mail.backends.smtp.EmailBackend"


def test_var_env_is_read_and_the_environment_wins_over_it(tmp_path):
    (tmp_path / ".env").write_text("POLYPHONY_ASSIGNMENT_MINUTES=7\nPOLYPHONY_SEEDS_PER_TASK=3\n")
    assert _setting_with_var_dir(tmp_path, "POLYPHONY_ASSIGNMENT_MINUTES") == "7"
    env_wins = {"POLYPHONY_ASSIGNMENT_MINUTES": "9"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c",
         "from django.conf import settings; print(settings.POLYPHONY_ASSIGNMENT_MINUTES)"],
        cwd=ROOT, env={**os.environ, "POLYPHONY_VAR_DIR": str(tmp_path), **env_wins},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.stdout.strip() == "9", result.stderr


def test_production_static_files_are_collected_hashed_and_served_by_whitenoise(tmp_path):
    # With the manifest on (DEBUG off, as deployed), pages name static files by their hashed
    # names, and the app itself serves them compressed and cacheable for good.
    env = {**os.environ, "POLYPHONY_VAR_DIR": str(tmp_path), "POLYPHONY_STATIC_MANIFEST": "true"}
    warned = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "polyphony.W010" in warned.stderr
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
    script = (
        "import re; from django.test import Client; c = Client(); "
        "page = c.get('/accounts/login/').content.decode(); "
        "css = re.search(r'href=\"(/static/polyphony\\.[0-9a-f]{12}\\.css)\"', page).group(1); "
        "r = c.get(css, HTTP_ACCEPT_ENCODING='gzip'); "
        "print(r.status_code, r['Cache-Control'], r.get('Content-Encoding'), sep='|')"
    )
    served = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert served.returncode == 0, served.stderr
    status, cache_control, encoding = served.stdout.strip().split("|")
    assert status == "200"
    assert "immutable" in cache_control and encoding == "gzip"


def test_deployments_hash_passwords_with_django_s_default_pbkdf2():
    # The tests switch to a quick hasher (tests/conftest.py); the project itself never does.
    from django.conf import global_settings

    from webapp import settings as project

    assert not hasattr(project, "PASSWORD_HASHERS")
    assert global_settings.PASSWORD_HASHERS[0].endswith("PBKDF2PasswordHasher")
