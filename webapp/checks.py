"""System checks for Polyphony's configuration, reported at start with ids polyphony.E0xx."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from django.conf import settings
from django.core import checks

# One id per setting a person is likely to get wrong; anything else is E009.
SETTING_CHECK_IDS = {
    "SECRET_KEY": "polyphony.E001",
    "DEBUG": "polyphony.E002",
    "DATABASE_URL": "polyphony.E003",
    "CELERY_BROKER_URL": "polyphony.E004",
    "S3_BUCKET": "polyphony.E005",
    "EMAIL_BACKEND": "polyphony.E008",
    "EMAIL_PORT": "polyphony.E008",
    "EMAIL_USE_TLS": "polyphony.E008",
    "EMAIL_TIMEOUT": "polyphony.E008",
}
SUPPORTED_BROKER_SCHEMES = ("filesystem", "redis", "rediss", "amqp", "amqps")


@checks.register("polyphony", deploy=False)
def check_environment(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Report every environment setting that could not be used as given."""
    errors = [
        checks.Error(message, id=SETTING_CHECK_IDS.get(name, "polyphony.E009"), obj=name)
        for name, message in settings.POLYPHONY_SETTINGS_ERRORS
    ]
    scheme = settings.CELERY_BROKER_URL.split("://", 1)[0]
    if "://" not in settings.CELERY_BROKER_URL or scheme not in SUPPORTED_BROKER_SCHEMES:
        errors.append(
            checks.Error(
                f"CELERY_BROKER_URL {settings.CELERY_BROKER_URL!r} is not a broker Polyphony "
                f"supports; use one of {', '.join(s + '://' for s in SUPPORTED_BROKER_SCHEMES)}.",
                id="polyphony.E004",
                obj="CELERY_BROKER_URL",
            )
        )
    if settings.POLYPHONY_BROKER_VISIBILITY_TIMEOUT <= settings.CELERY_TASK_TIME_LIMIT:
        errors.append(
            checks.Error(
                "POLYPHONY_BROKER_VISIBILITY_TIMEOUT "
                f"({settings.POLYPHONY_BROKER_VISIBILITY_TIMEOUT} s) must exceed the hard task "
                f"time limit ({settings.CELERY_TASK_TIME_LIMIT} s), "
                "or the broker hands a running task to a second worker.",
                id="polyphony.E006",
                obj="POLYPHONY_BROKER_VISIBILITY_TIMEOUT",
            )
        )
    if settings.CELERY_TASK_TIME_LIMIT <= settings.CELERY_TASK_SOFT_TIME_LIMIT:
        errors.append(
            checks.Error(
                "POLYPHONY_TASK_HARD_TIME_LIMIT must exceed POLYPHONY_TASK_SOFT_TIME_LIMIT, so a "
                "task has time to record its failure before it is killed.",
                id="polyphony.E007",
                obj="POLYPHONY_TASK_HARD_TIME_LIMIT",
            )
        )
    if settings.S3_BUCKET and importlib.util.find_spec("boto3") is None:
        errors.append(
            checks.Error(
                "S3_BUCKET is set but boto3 is not installed; pip install 'django-storages[s3]'.",
                id="polyphony.E005",
                obj="S3_BUCKET",
            )
        )
    errors.extend(_check_static_files())
    return errors


def _check_static_files() -> list[checks.CheckMessage]:
    # With DEBUG off, page templates name static files by their hashed names from the
    # manifest that `collectstatic` writes; without it every page fails to render.
    if not settings.POLYPHONY_STATIC_MANIFEST:
        return []
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.exists():
        return []
    return [
        checks.Warning(
            f"Static files are not collected ({manifest} is missing), so pages cannot render "
            "with DEBUG off: run `python manage.py collectstatic --no-input`.",
            id="polyphony.W010",
            obj="STATIC_ROOT",
        )
    ]


def stop_on_configuration_errors() -> None:
    """Exit with every configuration error, for entry points that run no system checks."""
    errors = [m for m in checks.run_checks(tags=["polyphony"]) if m.is_serious()]
    if errors:
        lines = "\n".join(f"  {m.id}: {m.msg}" for m in errors)
        sys.stderr.write(f"Polyphony cannot start, its configuration is wrong:\n{lines}\n")
        raise SystemExit(2)
