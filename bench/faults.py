"""Benchmark: votes and renders under faults, from real processes. Prints one JSON object.

    .venv/bin/python bench/faults.py [--seconds 40] [--raters 12] [--prompts 6]

Votes: gunicorn (3 workers) on a PostgreSQL of the bench's own (the embedded server, data in
var/faults-pgdata) serves raters driven as rate.js drives them: each posts a vote, is answered
with the next pair as JSON, and resends the same answers after a 503 or a broken connection,
with growing waits. Meanwhile gunicorn workers are SIGKILLed (gunicorn starts new ones) and the
PostgreSQL server is stopped and started. Counted: votes acknowledged (answered 200), stored,
lost (acknowledged, not stored), doubled (two votes of a rater on a pair, or a vote and a skip
on one assignment), server errors (5xx other than 503), and the seconds from the database being
back to the first vote served.

Renders: a Redis of the bench's own (no persistence) and real Celery workers (`gpu` queue, one
pool child each, as the README runs them) render a batch with the tiny model while a pool child
is SIGKILLed, then a worker's main process with its children, then Redis is restarted empty
(the messages of the queued images are lost). The requeue runs every --check seconds, as beat
runs it. Counted: images done, rendered twice (stored by two renders), stuck (not done at the
end), the seconds from each fault to every image it hit being back (rendering again, done, or
queued with a new message) and to all of them done (render throughput), and the files (each
named by the SHA-256 of its bytes, none empty, none an orphan). The leases are short here
(--lease, --check, --requeue-queued) to bound the run; recovery takes lease + check at most, so
the defaults (120 s + 30 s) recover within 150 s.

Everything it starts (PostgreSQL, Redis, gunicorn, workers) it stops, also on failure."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import ROOT, machine

PG_DIR = ROOT / "var" / "faults-pgdata"
SLUG = "bench-votes"
ANSWERS = {
    "answer_alignment": "1",
    "answer_representation": "2",
    "answer_stereotype": "tie",
    "answer_offensiveness": "1",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _pg(action: str) -> str:
    # In a process of its own: pgserver keeps a started server per process and would not
    # start one it has seen stop.
    done = subprocess.run(
        [sys.executable, "-m", "webapp.embedded_postgres", action, str(PG_DIR)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=action == "start",
    )
    return done.stdout.strip()


def _pg_start() -> str:
    return _pg("start").rsplit("/", 1)[0]


def _pg_stop() -> None:
    _pg("stop")


# Votes.


class Rater(threading.Thread):
    """One rater's browser: load the page, then vote, resending after a 503 or no answer."""

    def __init__(self, port: int, session: str, stop_at: float, log: dict) -> None:
        super().__init__(daemon=True)
        self.port, self.session, self.stop_at, self.log = port, session, stop_at, log
        self.acknowledged: list[str] = []
        self.errors = 0
        self.refused = 0
        self.conn: http.client.HTTPConnection | None = None
        self.csrf = ""

    def _request(self, method: str, path: str, body: str = "", headers=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        cookie = f"sessionid={self.session}" + (f"; csrftoken={self.csrf}" if self.csrf else "")
        try:
            self.conn.request(
                method, path, body=body, headers={"Cookie": cookie, **(headers or {})}
            )
            response = self.conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return None, {}, b""

    def _page(self) -> str | None:
        while time.monotonic() < self.stop_at:
            status, headers, body = self._request("GET", f"/s/{SLUG}/rate/")
            if status == 200:
                match = re.search(r"csrftoken=([^;]+)", headers.get("Set-Cookie", ""))
                if match:
                    self.csrf = match.group(1)
                return re.search(rb'name="assignment" value="([0-9a-f-]+)"', body).group(1).decode()
            time.sleep(0.5)
        return None

    def run(self) -> None:
        assignment = self._page()
        tries = 0
        while assignment and time.monotonic() < self.stop_at:
            body = "&".join(
                f"{key}={value}" for key, value in {"assignment": assignment, **ANSWERS}.items()
            )
            status, _, content = self._request(
                "POST",
                f"/s/{SLUG}/vote/",
                body,
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                    "X-CSRFToken": self.csrf,
                    "Referer": f"http://127.0.0.1:{self.port}/",
                },
            )
            if status == 200:
                self.acknowledged.append(assignment)
                self.log["served"].append(time.monotonic())
                answer = json.loads(content)
                assignment = None if answer.get("redirect") else answer["assignment"]
                tries = 0
                continue
            if status is None or status in (502, 503):
                tries += 1
                time.sleep(min(2.0, 0.05 * 2**tries) * (0.75 + random.random() / 2))
                continue
            if status >= 500:
                self.errors += 1
            else:
                self.refused += 1
            assignment = self._page()


def votes_bench(args) -> dict:
    import votes as votes_bench_module  # bench/votes.py: its study, pairs and raters
    from django.db import connection

    from ratings.models import Assignment, Vote

    study, batch, base, tuned = votes_bench_module._study_make(raters_per_pair=50)
    votes_bench_module._pairs_load(study, batch, base, tuned, first=0, count=4000, votes=(0, 0))
    raters = votes_bench_module._raters_make(study, "fault-", args.raters)
    sessions = votes_bench_module._sessions_make(raters)
    study.attention_check_rate = 0
    study.min_seconds_per_pair = 0
    study.save()
    connection.close()

    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="polyphony-faults-"))
    server = votes_bench_module._gunicorn_start(port, workers=3, threads=4, log_path=work / "g.log")
    log: dict = {"served": []}
    events: list[dict] = []
    try:
        started = time.monotonic()
        stop_at = started + args.seconds
        drivers = [Rater(port, key, stop_at, log) for key in sessions]
        for driver in drivers:
            driver.start()
        schedule = sorted(
            [(f, "kill") for f in (0.15, 0.45, 0.75)] + [(f, "db") for f in (0.3, 0.6)]
        )
        for share, fault in schedule:
            time.sleep(max(0.0, started + share * args.seconds - time.monotonic()))
            if fault == "kill":
                workers = _children(server.pid)
                victim = random.choice(workers)
                os.kill(victim, signal.SIGKILL)
                events.append(
                    {"fault": "gunicorn worker SIGKILL", "at_s": time.monotonic() - started}
                )
            else:
                _pg_stop()
                time.sleep(1.0)
                _pg_start()
                up = time.monotonic()
                events.append({"fault": "PostgreSQL restart", "up": up, "at_s": up - started})
        for driver in drivers:
            driver.join(timeout=60)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    for event in events:
        if "up" in event:
            after = [t for t in log["served"] if t >= event["up"]]
            event["service_back_s"] = round(min(after) - event.pop("up"), 3) if after else None
        event["at_s"] = round(event["at_s"], 2)

    acknowledged = [a for driver in drivers for a in driver.acknowledged]
    stored = Vote.objects.filter(study=study).count()
    voted = set(
        str(pk)
        for pk in Assignment.objects.filter(rater__in=raters, voted_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT rater_id, pair_id FROM ratings_vote WHERE study_id = %s"
            " AND kind <> 'repeat' GROUP BY 1, 2 HAVING count(*) > 1) d",
            [study.pk],
        )
        doubled = cursor.fetchone()[0]
    doubled += Assignment.objects.filter(
        rater__in=raters, voted_at__isnull=False, skipped_at__isnull=False
    ).count()
    return {
        "seconds": args.seconds,
        "raters": args.raters,
        "gunicorn_workers": 3,
        "faults": events,
        "votes_acknowledged": len(acknowledged),
        "votes_stored": stored,
        "votes_lost": len(set(acknowledged) - voted),
        "votes_doubled": doubled,
        "acknowledged_twice": len(acknowledged) - len(set(acknowledged)),
        "server_errors": sum(driver.errors for driver in drivers),
        "refused": sum(driver.refused for driver in drivers),
        "service_back_after_db_s": max(
            (e["service_back_s"] for e in events if e.get("service_back_s") is not None),
            default=None,
        ),
    }


# Renders.


def _redis_start(port: int, folder: Path) -> None:
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
        ],
        check=True,
        capture_output=True,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)


def _redis_stop(port: int) -> None:
    import redis

    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(port=port).shutdown(nosave=True)


def _worker_start(env: dict, log_path: Path, name: str, concurrency: int = 1) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "webapp",
        "worker",
        "-Q",
        "gpu",
        "-c",
        str(concurrency),
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{name}@%h",
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log_path.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def renders_bench(args) -> dict:
    from django.db import connection
    from django.db.models import Q
    from django.test import override_settings
    from django.utils import timezone

    from generation.batch_files import PromptRow
    from generation.models import Image, ModelVariant
    from generation.services import batch_queue, images_requeue_stuck
    from generation.tiny import build_tiny_model
    from ratings.studies import cohort_ensure, study_create

    work = Path(tempfile.mkdtemp(prefix="polyphony-faults-render-"))
    media = work / "media"
    port = args.redis_port
    timing = {
        "POLYPHONY_RENDER_LEASE_SECONDS": args.lease,
        "POLYPHONY_REQUEUE_QUEUED_SECONDS": args.requeue_queued,
    }
    env = {
        **os.environ,
        **{key: str(value) for key, value in timing.items()},
        "MEDIA_ROOT": str(media),
        "PYTHONUNBUFFERED": "1",
    }
    logs = work / "workers.log"
    workers: list[subprocess.Popen] = []
    events: list[dict] = []
    try:
        tiny = build_tiny_model(work / "tiny")
        cohort_ensure(path="bench")
        study = study_create(name="faults", slug=f"faults-{os.getpid()}", cohort_paths=["bench"])
        common = {"steps": args.steps, "width": 64, "height": 64, "guidance": 4.5}
        variants = [
            ModelVariant.objects.create(
                name=f"faults-base-{os.getpid()}",
                role="base",
                base_checkpoint=str(tiny.base),
                **common,
            ),
            ModelVariant.objects.create(
                name=f"faults-lora-{os.getpid()}",
                role="finetuned",
                base_checkpoint=str(tiny.base),
                lora_path=str(tiny.lora),
                **common,
            ),
        ]
        workers.append(_worker_start(env, logs, "faults-1"))
        rows = [
            PromptRow(
                n + 1, f"a harvest festival, scene {n}", "bench", "faults", (n * 10 + 1, n * 10 + 2)
            )
            for n in range(args.prompts)
        ]
        with override_settings(**timing):
            batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
        images = Image.objects.filter(prompt__batch=batch)
        started = time.monotonic()
        deadline = started + args.render_timeout
        next_check = started + args.check

        def tick() -> None:
            nonlocal next_check
            if time.monotonic() >= next_check:
                with override_settings(**timing):
                    images_requeue_stuck()
                next_check = time.monotonic() + args.check
            for event in events:
                hit = images.filter(pk__in=event["hit"])
                if (
                    "back_s" not in event
                    and not hit.exclude(
                        Q(status=Image.Status.DONE)
                        | Q(started_at__gt=event["at"])
                        | Q(status=Image.Status.QUEUED, enqueued_at__gt=event["at"])
                    ).exists()
                ):
                    # Every image it hit is rendering again, done, or queued with a new message.
                    event["back_s"] = round(time.monotonic() - event["t"], 1)
                if "done_s" not in event and not hit.exclude(status=Image.Status.DONE).exists():
                    event["done_s"] = round(time.monotonic() - event["t"], 1)
            time.sleep(0.3)

        def running_now() -> list[int]:
            while time.monotonic() < deadline:
                ids = list(images.filter(status=Image.Status.RUNNING).values_list("pk", flat=True))
                if ids:
                    return ids
                tick()
            return []

        # 1. A pool child SIGKILLed mid-render: the main process requeues the message.
        hit = running_now()
        time.sleep(0.5)
        children = _children(workers[0].pid)
        if children:
            os.kill(children[0], signal.SIGKILL)
        events.append(
            {"fault": "pool child SIGKILL", "hit": hit, "t": time.monotonic(), "at": timezone.now()}
        )
        # 2. The worker's main process and its children SIGKILLed; a new worker starts.
        for _ in range(20):
            tick()
        hit = running_now()
        time.sleep(0.5)
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=10)
        events.append(
            {
                "fault": "worker main SIGKILL",
                "hit": hit,
                "t": time.monotonic(),
                "at": timezone.now(),
            }
        )
        workers.append(_worker_start(env, logs, "faults-2"))
        # 3. Redis restarted without persistence: the queued images' messages are lost.
        for _ in range(20):
            tick()
        hit = list(images.filter(status=Image.Status.QUEUED).values_list("pk", flat=True))
        _redis_stop(port)
        time.sleep(0.5)
        _redis_start(port, work)
        events.append(
            {
                "fault": "Redis restart, no persistence",
                "hit": hit,
                "t": time.monotonic(),
                "at": timezone.now(),
            }
        )

        while time.monotonic() < deadline and images.exclude(status=Image.Status.DONE).exists():
            tick()
        tick()
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)

    text = logs.read_text()
    rendered = {int(pk) for pk in re.findall(r"Rendered image (\d+)\b", text)}
    stored_counts = [len(re.findall(rf"Rendered image {image.pk}\b", text)) for image in images]
    referenced = set()
    bad_files = 0
    for image in images.filter(status=Image.Status.DONE):
        for name in (image.file.name, image.preview.name):
            path = media / name
            referenced.add(path)
            data = path.read_bytes() if path.exists() else b""
            if not data or Path(name).stem != hashlib.sha256(data).hexdigest():
                bad_files += 1
    on_disk = {p for p in media.rglob("*") if p.is_file()}
    result = {
        "settings": {
            **{k: v for k, v in timing.items() if k != "CELERY_BROKER_URL"},
            "requeue_every_s": args.check,
        },
        "images": images.count(),
        "images_done": images.filter(status=Image.Status.DONE).count(),
        "images_rendered_logged": len(rendered),
        "images_stored_twice": sum(count > 1 for count in stored_counts),
        "images_stuck": images.exclude(status=Image.Status.DONE).count(),
        "files_bad_name_or_empty": bad_files,
        "files_orphan": len(on_disk - referenced),
        "files_partial": sum(1 for p in on_disk if p.name.startswith(".") or p.suffix == ".tmp"),
        "faults": [
            {
                "fault": e["fault"],
                "images_hit": len(e["hit"]),
                "seconds_to_recover": e.get("back_s"),
                "seconds_to_all_done": e.get("done_s"),
            }
            for e in events
        ],
    }
    result["max_seconds_to_recover"] = max(
        (f["seconds_to_recover"] or float("inf") for f in result["faults"]), default=None
    )
    shutil.rmtree(work, ignore_errors=True)
    connection.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40, help="length of the votes run")
    parser.add_argument("--raters", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=6, help="prompts (x2 seeds x2 variants)")
    parser.add_argument("--steps", type=int, default=12, help="denoising steps (render time)")
    parser.add_argument("--lease", type=int, default=10)
    parser.add_argument("--check", type=int, default=5)
    parser.add_argument("--requeue-queued", type=int, default=15)
    parser.add_argument("--render-timeout", type=float, default=300)
    parser.add_argument("--skip-votes", action="store_true")
    parser.add_argument("--skip-renders", action="store_true")
    args = parser.parse_args()

    # A PostgreSQL and a Redis (no persistence) of the bench's own, which it restarts; both
    # stopped at the end.
    os.environ["DATABASE_URL"] = f"{_pg_start()}/polyphony_faults"
    args.redis_port = _free_port()
    redis_dir = Path(tempfile.mkdtemp(prefix="polyphony-faults-redis-"))
    _redis_start(args.redis_port, redis_dir)
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{args.redis_port}/0"
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
    os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("POLYPHONY_PANEL_NEW_RATERS_PER_ADDRESS_PER_HOUR", "0")
    from _support import database_create, environment_defaults

    environment_defaults(database="polyphony_faults", broker_db=11)
    database_create(fresh=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    result = {"machine": machine()}
    try:
        if not args.skip_votes:
            result["votes"] = votes_bench(args)
        if not args.skip_renders:
            result["renders"] = renders_bench(args)
    finally:
        _pg_stop()
        _redis_stop(args.redis_port)
        shutil.rmtree(redis_dir, ignore_errors=True)
        print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
