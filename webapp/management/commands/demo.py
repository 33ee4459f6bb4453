"""Run the demo: set it up, start the workers and the web server, stop them all on Ctrl-C.

This process holds the embedded PostgreSQL (manage.py started it when DATABASE_URL was unset),
so the server stops when the demo does; the children get DATABASE_URL and never start one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.management.commands.demo_setup import DEMO_PEOPLE

# How long a child gets to stop after SIGTERM before it is killed: a render in progress is not
# waited for (its images go back to the queue when the demo starts again).
STOP_GRACE_SECONDS = 2.0


class Command(BaseCommand):
    help = "Run the demo: migrate, set up, then a render worker, a scores worker and the server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--address", default="127.0.0.1:8000", help="host:port to serve")

    def handle(self, *args, address: str, **options) -> None:
        var = Path(settings.VAR_DIR)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("demo_setup", stdout=self.stdout)
        self._requeue_interrupted_renders()
        celery = str(Path(sys.executable).parent / "celery")
        environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = {
            "render worker": [
                celery, "-A", "webapp", "worker", "-Q", "gpu", "-c", "1", "-n", "gpu@%h",
                "--prefetch-multiplier", "1", "--loglevel", "INFO",
                "--logfile", str(var / "worker-gpu.log"),
            ],
            # Scores never wait behind a render: their own worker, with the periodic checks.
            "scores worker": [
                celery, "-A", "webapp", "worker", "-B", "-s", str(var / "celerybeat-schedule"),
                "-Q", "default", "-c", "1", "-n", "default@%h", "--loglevel", "INFO",
                "--logfile", str(var / "worker-default.log"),
            ],
            "web server": [
                sys.executable, "manage.py", "runserver", address, "--noreload",
            ],
        }  # fmt: skip
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_signal_args) -> None:
            nonlocal stopping
            if stopping:
                return
            stopping = True
            self.stdout.write("\nStopping the demo...")
            for child in children.values():
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for child in children.values():
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
            self.stdout.write("Stopped. `make demo` starts it again with the same data.")

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, command in commands.items():
            # Each child in a session of its own: Ctrl-C reaches only this process, which
            # stops the children in order instead of each printing its own shutdown.
            # The workers log to their files; their start-up banners would print after the
            # address and credentials and scroll them away, so they go there too.
            banner = None if name == "web server" else (var / f"{name.split()[0]}.out").open("w")
            children[name] = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=environ,
                start_new_session=True,
                stdout=banner,
                stderr=subprocess.STDOUT if banner else None,
            )
        host, _, port = address.rpartition(":")
        if self._wait_for_port(host, int(port), children["web server"]):
            self._print_welcome(address, var)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None and not stopping:
                    self.stderr.write(f"The {name} exited ({child.returncode}); stopping.")
                    stop()
            time.sleep(0.5)

    def _requeue_interrupted_renders(self) -> None:
        """Return to the queue the images a stopped demo left running.

        No worker runs yet (this process starts the only ones), so every running image was
        interrupted: requeue them now rather than after the stuck-image check's hour. The
        filesystem broker keeps no unacknowledged message to redeliver.
        """
        from datetime import timedelta

        from django.utils import timezone

        from generation.services import images_requeue_stuck

        # The stuck-image check takes back images started before now - (time limit + 60 s).
        horizon = timezone.now() + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 61)
        requeued = images_requeue_stuck(now=horizon)
        if requeued:
            self.stdout.write(f"Returned {requeued} interrupted images to the render queue.")

    def _wait_for_port(self, host: str, port: int, server: subprocess.Popen) -> bool:
        while server.poll() is None:
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.2)
        return False

    def _print_welcome(self, address: str, var: Path) -> None:
        lines = [
            f"Polyphony demo: http://{address}/",
            "",
            *(
                f"{role:<11} {username:<11} {password}"
                for username, (password, role) in DEMO_PEOPLE.items()
            ),
            "",
            f"Logs: {var}/worker-gpu.log, {var}/worker-default.log",
            "Ctrl-C stops everything.",
        ]
        width = max(len(line) for line in lines)
        self.stdout.write("+" + "-" * (width + 2) + "+")
        for line in lines:
            self.stdout.write(f"| {line:<{width}} |")
        self.stdout.write("+" + "-" * (width + 2) + "+")
