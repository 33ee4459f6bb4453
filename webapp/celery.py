"""The Celery app: generation tasks go to the `gpu` queue, everything else to `default`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import worker_init

from webapp.bootstrap import environment_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

# Celery warns when a worker runs as root (as in a container). Safe to silence here: the
# workers accept JSON messages only (Celery's default accept_content), never pickle, which is
# what the warning is about.
warnings.filterwarnings("ignore", category=SecurityWarning)

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_configure.connect
def _prepare_environment(sender: Celery, **kwargs) -> None:
    # Before the settings are read, not at import: importing the webapp package (as
    # `python -m webapp.embedded_postgres` does) must not start a database.
    environment_prepare()


app.autodiscover_tasks()
# The task modules inside the apps' packages (their tasks keep their first names, such as
# `ratings.tasks.scores_compute_task`, which the routes and queued messages use).
app.autodiscover_tasks(["ratings.results", "ratings.entry", "generation.rendering"])


@app.on_after_configure.connect
def _make_filesystem_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport expects its folders to exist.
    options = sender.conf.broker_transport_options or {}
    if str(sender.conf.broker_url).startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _refuse_bad_configuration(**kwargs) -> None:
    # Celery runs no Django system checks; without this a worker would start on a bad setting
    # and fail at its first task instead.
    from webapp.checks import stop_on_configuration_errors

    stop_on_configuration_errors()
