"""The rate limits' counts live in PostgreSQL: every process counts together, none is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.utils import timezone

from ratings.entry.services import entry_window_count, entry_windows_purge
from ratings.models import EntryWindow

ROOT = Path(__file__).resolve().parent.parent
COUNTER = """
import django
django.setup()
from ratings.entry.services import entry_window_count
print(" ".join(str(entry_window_count("test:processes", 3600)) for _ in range(10)))
"""


@pytest.mark.django_db(transaction=True)
def test_separate_processes_count_together():
    # The test database, as every web process of a deployment sees the one database.
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_url = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    env = {**os.environ, "DATABASE_URL": test_url, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    seen = [
        int(value) for process in processes for value in process.communicate(timeout=120)[0].split()
    ]
    assert all(process.returncode == 0 for process in processes)
    assert sorted(seen) == list(range(1, 31))
    assert entry_window_count("test:processes", 3600) == 31


@pytest.mark.django_db(transaction=True)
def test_counts_from_many_connections_at_once_add_up_without_loss():
    # Each thread has its own database connection, as each web process has.
    threads, per_thread = 8, 10
    seen: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def count() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                value = entry_window_count("test:burst", 3600)
                with lock:
                    seen.append(value)
        finally:
            connection.close()

    workers = [threading.Thread(target=count) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Every count was handed out exactly once: none lost, none twice.
    assert sorted(seen) == list(range(1, threads * per_thread + 1))
    assert EntryWindow.objects.get(key="test:burst").count == threads * per_thread


@pytest.mark.django_db
def test_keys_and_windows_count_apart():
    assert [entry_window_count("test:a", 3600) for _ in range(3)] == [1, 2, 3]
    assert entry_window_count("test:b", 3600) == 1
    # Another window length is another window.
    assert entry_window_count("test:a", 60) == 1
    window = EntryWindow.objects.get(key="test:a", count=3)
    assert window.window_start.timestamp() % 3600 == 0
    assert window.expires_at - window.window_start == timedelta(hours=1)


@pytest.mark.django_db
def test_purge_deletes_only_the_windows_that_have_passed():
    entry_window_count("test:now", 60)
    now = timezone.now()
    EntryWindow.objects.create(
        key="test:old", window_start=now - timedelta(hours=2), expires_at=now - timedelta(hours=1)
    )
    assert entry_windows_purge() == 1
    assert list(EntryWindow.objects.values_list("key", flat=True)) == ["test:now"]
    assert entry_windows_purge(now=now + timedelta(minutes=2)) == 1
    assert not EntryWindow.objects.exists()
