"""Benchmark: votes per second through the rating pages, and pair assignment at scale.

    .venv/bin/python bench/votes.py [--raters 64] [--seconds 15] [--rounds 3] [--think 0]
    .venv/bin/python bench/votes.py --assignment

Default mode serves the app with gunicorn on PostgreSQL (its own database, made afresh and
migrated), seeds a study with pairs (rows pointing at a pool of tiny stored images: rendering is
not what is measured) and N raters, each with consent, a cohort and a signed-in session. A second
process then drives the N raters at once over loopback: each gets its rating page, reads the
assignment id and the CSRF token, and posts a vote, then goes on at once (or after --think
seconds, to see latency below saturation). Rounds alternate with rounds against /healthz, a
trivial view of the same server, whose requests per second are the ceiling; medians over rounds
are reported.

--assignment loads 10,000 pairs, then 1,000,000 pairs with 10,000,000 votes' worth of coverage
(SQL generate_series, not the ORM), with an expired assignment per vote on the least voted
pairs, the ones assignment reads; the votes table stays empty, as assignment never reads it.
It times pair_assign for fresh raters at both sizes and prints the EXPLAIN (ANALYZE, BUFFERS)
plans of its queries at 1M.

Uses DATABASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/polyphony_bench_votes);
the database is dropped and made again on every run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
os.environ.setdefault(
    "DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/polyphony_bench_votes"
)
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 32)
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")

SLUG = "bench-votes"
ROOT_CULTURES = ("india", "korea", "nigeria", "brazil")
SUB_CULTURES = ("india:tamil", "india:kerala")
# The pair pool: pair k shows base image k // POOL and fine-tuned image k % POOL, so a million
# pairs stay distinct with 2 x POOL image rows.
POOL = 1_100
ASSIGNMENT_RE = re.compile(rb'name="assignment" value="([0-9a-f-]+)"')
CSRF_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
CRITERION_RE = re.compile(rb'name="answer_([a-z0-9_-]+)"')
SCREEN_ANSWERS = ("1", "2", "tie", "skip")


# The driver: a second process, asyncio over raw HTTP/1.1 keep-alive connections.


class _Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            head += f"Content-Length: {len(body)}\r\n\r\n"
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readline()
            if not status_line:
                # The server closed an idle keep-alive connection before reading: send again.
                self.close()
                if attempt:
                    raise ConnectionError("the server closed the connection")
                continue
            status = int(status_line.split()[1])
            response_headers = []
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                response_headers.append((name.strip().lower(), value.strip()))
            fields = dict(response_headers)
            if fields.get("transfer-encoding") == "chunked":
                chunks = []
                while size := int((await self.reader.readline()).strip(), 16):
                    chunks.append(await self.reader.readexactly(size))
                    await self.reader.readline()
                await self.reader.readline()
                content = b"".join(chunks)
            else:
                content = await self.reader.readexactly(int(fields.get("content-length", "0")))
            if fields.get("connection", "").lower() == "close":
                self.close()
            return status, response_headers, content
        raise AssertionError("unreachable")


class _Tally:
    def __init__(self, measure_from: float, deadline: float) -> None:
        self.measure_from = measure_from
        self.deadline = deadline
        self.latencies_ms: list[float] = []
        self.cycles_ms: list[float] = []
        self.done = 0  # votes, or healthz answers
        self.errors: list[str] = []

    def counts(self, started: float) -> bool:
        return self.measure_from <= started and time.perf_counter() <= self.deadline


def _cookies_update(cookies: dict[str, str], headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        if name == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key] = rest.split(";", 1)[0]


async def _rater_drive(
    port: int, session_key: str, tally: _Tally, rng: random.Random, think_s: float
) -> None:
    connection = _Connection(port)
    cookies = {"sessionid": session_key}
    try:
        # With a think time, raters start spread over one and pause about that long per pair.
        await asyncio.sleep(rng.uniform(0, think_s))
        while time.perf_counter() < tally.deadline:
            started = time.perf_counter()
            cookie = "; ".join(f"{key}={value}" for key, value in cookies.items())
            status, headers, page = await connection.request(
                "GET", f"/s/{SLUG}/rate/", {"Cookie": cookie}
            )
            served = time.perf_counter()
            _cookies_update(cookies, headers)
            assignment, token = ASSIGNMENT_RE.search(page), CSRF_RE.search(page)
            if status != 200 or assignment is None or token is None:
                tally.errors.append(f"rate page {status}")
                return
            form = {"csrfmiddlewaretoken": token.group(1).decode(), "assignment": ""}
            form["assignment"] = assignment.group(1).decode()
            for key in sorted(set(CRITERION_RE.findall(page))):
                form[f"answer_{key.decode()}"] = rng.choice(SCREEN_ANSWERS)
            cookie = "; ".join(f"{key}={value}" for key, value in cookies.items())
            status, headers, _ = await connection.request(
                "POST",
                f"/s/{SLUG}/vote/",
                {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
                urlencode(form).encode(),
            )
            voted = time.perf_counter()
            _cookies_update(cookies, headers)
            if status != 302:
                tally.errors.append(f"vote {status}")
                return
            if tally.counts(started):
                tally.latencies_ms += [(served - started) * 1000, (voted - served) * 1000]
                tally.cycles_ms.append((voted - started) * 1000)
                tally.done += 1
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))
    finally:
        connection.close()


async def _healthz_drive(port: int, tally: _Tally) -> None:
    connection = _Connection(port)
    try:
        while time.perf_counter() < tally.deadline:
            started = time.perf_counter()
            status, _, body = await connection.request("GET", "/healthz", {})
            if status != 200 or body != b"ok":
                tally.errors.append(f"healthz {status}")
                return
            if tally.counts(started):
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                tally.done += 1
    finally:
        connection.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def drive(
    mode: str, port: int, sessions: list[str], seconds: float, warmup: float, think_s: float
) -> dict:
    """Run one round of N concurrent clients; return what they measured."""

    async def run() -> _Tally:
        start = time.perf_counter()
        tally = _Tally(start + warmup, start + warmup + seconds)
        rng = random.Random(0)
        if mode == "votes":
            clients = [_rater_drive(port, key, tally, rng, think_s) for key in sessions]
        else:
            clients = [_healthz_drive(port, tally) for _ in sessions]
        await asyncio.gather(*clients)
        return tally

    tally = asyncio.run(run())
    return {
        "per_s": tally.done / seconds,
        "p50_ms": _percentile(tally.latencies_ms, 0.50),
        "p99_ms": _percentile(tally.latencies_ms, 0.99),
        "cycle_p50_ms": _percentile(tally.cycles_ms, 0.50),
        "requests": len(tally.latencies_ms),
        "errors": tally.errors[:5],
        "error_count": len(tally.errors),
    }


# Setting up: a fresh database, a study, pairs and raters, all in bulk.


def _database_fresh() -> None:
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
        connection.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{db["NAME"]}"')


def _study_make(raters_per_pair: int):
    from generation.models import Image, ModelVariant, Prompt, PromptBatch
    from ratings import services

    cohorts = [services.cohort_ensure(path=path) for path in (*ROOT_CULTURES, *SUB_CULTURES)]
    study = services.study_create(
        name="Bench votes",
        slug=SLUG,
        cohort_paths=[cohort.path for cohort in cohorts],
        raters_per_pair=raters_per_pair,
        pairs_per_rater=30_000,  # the quota never ends a simulated rater's run
    )
    base = ModelVariant.objects.create(name="bench-base", role="base", base_checkpoint="none")
    tuned = ModelVariant.objects.create(
        name="bench-tuned", role="finetuned", base_checkpoint="none"
    )
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=4)
    pool_prompt = Prompt.objects.create(batch=batch, text="image pool", cohort=cohorts[0])
    Image.objects.bulk_create(
        Image(
            prompt=pool_prompt,
            variant=variant,
            seed=seed,
            status=Image.Status.DONE,
            file=f"images/bench-{variant.role}.png",
        )
        for variant in (base, tuned)
        for seed in range(POOL)
    )
    return study, batch, base, tuned


def _pairs_load(study, batch, base, tuned, *, first: int, count: int, votes: tuple[int, int]):
    """Add pairs first..first+count-1 with coverage and expired assignments, in SQL.

    Prompts cycle through the cultures, four seeds (pairs) per prompt. A pair gets v votes,
    v in `votes` and spread evenly: its rows for the prompt's cohort and ancestors count v,
    rows for sub-cultures below it v // 3, and its root row 0 to 3 out-group votes. Pairs of
    the two lowest vote counts, the only ones assignment reads here, get an expired assignment
    of a distinct bench rater per vote; the others have their votes in coverage only (ten
    million assignment rows would take most of an hour to load on two cores).
    """
    from django.db import connection

    from generation.models import Image, Prompt
    from ratings.cohorts import cohort_path_contains
    from ratings.models import Assignment, Cohort, Pair, PairCoverage, Rater

    paths = dict(Cohort.objects.values_list("path", "pk"))
    prompt_paths = [*ROOT_CULTURES, *SUB_CULTURES]
    relation = []  # (prompt cohort, coverage cohort, counts the prompt's votes)
    for prompt_path in prompt_paths:
        for path in paths:
            if cohort_path_contains(path, prompt_path):
                relation.append((paths[prompt_path], paths[path], True))
            elif cohort_path_contains(prompt_path, path):
                relation.append((paths[prompt_path], paths[path], False))
    image_ids = {
        variant: list(
            Image.objects.filter(variant=variant, prompt__text="image pool")
            .order_by("seed")
            .values_list("pk", flat=True)
        )
        for variant in (base, tuned)
    }
    rater_ids = list(Rater.objects.filter(user__username__startswith="load-").values_list("pk"))
    low, high = votes
    spread = high - low + 1
    last_pair = Pair.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        # Rows made consistent by construction: no deferred foreign-key check per row (a queue
        # of tens of millions of trigger events). Needs a superuser, as the default URL is.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            f"""
            WITH prompts AS (
                INSERT INTO {Prompt._meta.db_table} (batch_id, text, category, cohort_id)
                SELECT %s, 'bench prompt ' || n, '', (%s::bigint[])[1 + n %% %s]
                FROM generate_series(%s, %s) n
                RETURNING id, substring(text from 14)::bigint AS n
            )
            INSERT INTO {Pair._meta.db_table} (study_id, prompt_id, seed, image_a_id,
                image_b_id, variant_a_id, variant_b_id, is_attention_check, created_at)
            SELECT %s, prompts.id, seed, (%s::bigint[])[1 + (prompts.n * 4 + seed) / %s],
                (%s::bigint[])[1 + (prompts.n * 4 + seed) %% %s], %s, %s, false, now()
            FROM prompts CROSS JOIN generate_series(0, 3) seed
            WHERE prompts.n * 4 + seed < %s
            """,
            [
                batch.pk,
                [paths[path] for path in prompt_paths],
                len(prompt_paths),
                first // 4,
                (first + count - 1) // 4,
                study.pk,
                image_ids[base],
                POOL,
                image_ids[tuned],
                POOL,
                base.pk,
                tuned.pk,
                first + count,
            ],
        )
        # A pair's vote count, the same in every statement: a hash of its id.
        pair_votes = f"({low} + abs(hashint8(pair.id)) %% {spread})"
        cursor.execute(
            f"""
            INSERT INTO {PairCoverage._meta.db_table}
                (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT pair.study_id, pair.id, relation.cohort_id,
                CASE WHEN relation.counts THEN {pair_votes} ELSE {pair_votes} / 3 END,
                CASE WHEN relation.cohort_id = ANY(%s::bigint[])
                    THEN abs(hashint8(pair.id + 1)) %% 4 ELSE 0 END
            FROM {Pair._meta.db_table} pair
            JOIN {Prompt._meta.db_table} prompt ON prompt.id = pair.prompt_id
            JOIN unnest(%s::bigint[], %s::bigint[], %s::bool[])
                relation(prompt_cohort_id, cohort_id, counts)
                ON relation.prompt_cohort_id = prompt.cohort_id
            WHERE pair.id > %s
            """,
            [
                [paths[path] for path in ROOT_CULTURES],
                [prompt for prompt, _, _ in relation],
                [cohort for _, cohort, _ in relation],
                [counts for _, _, counts in relation],
                last_pair,
            ],
        )
        cursor.execute(
            f"""
            INSERT INTO {Assignment._meta.db_table} (id, rater_id, pair_id, kind, cohort_id,
                shown_left, served_at, expires_at, skip_reason)
            SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(pair.id * 32 + k), 12, '0'))::uuid,
                (%s::bigint[])[1 + (pair.id * 7 + k) %% %s], pair.id, 'pair', prompt.cohort_id,
                'a', now() - interval '2 days', now() - interval '1 day', ''
            FROM {Pair._meta.db_table} pair
            JOIN {Prompt._meta.db_table} prompt ON prompt.id = pair.prompt_id
            CROSS JOIN LATERAL generate_series(1, {pair_votes}) k
            WHERE pair.id > %s AND {pair_votes} <= %s
            """,
            [[pk for (pk,) in rater_ids], len(rater_ids), last_pair, low + 1],
        )
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("SET synchronous_commit = on")


def _raters_make(study, prefix: str, count: int) -> list:
    """Make raters with consent and one cohort each, cycling through the cultures, in bulk."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from ratings.models import Cohort, Participation, Rater

    users = User.objects.bulk_create(
        User(username=f"{prefix}{i}", password="!unusable") for i in range(count)
    )
    raters = Rater.objects.bulk_create(Rater(user=user) for user in users)
    cohorts = list(Cohort.objects.filter(path__in=[*ROOT_CULTURES, *SUB_CULTURES]))
    Rater.cohorts.through.objects.bulk_create(
        Rater.cohorts.through(rater_id=rater.pk, cohort_id=cohorts[i % len(cohorts)].pk)
        for i, rater in enumerate(raters)
    )
    Participation.objects.bulk_create(
        Participation(study=study, rater=rater, consented_at=timezone.now()) for rater in raters
    )
    return raters


def _sessions_make(raters) -> list[str]:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    keys = []
    for rater in raters:
        store = SessionStore()
        store[SESSION_KEY] = str(rater.user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = rater.user.get_session_auth_hash()
        store.create()
        keys.append(store.session_key)
    return keys


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def _machine() -> dict:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version()}


# Default mode: votes through gunicorn against the ceiling of a trivial view.


def _gunicorn_start(port: int, workers: int, threads: int, log_path: Path) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "webapp.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=os.environ, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    import urllib.request

    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.read() == b"ok":
                    return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {log_path}") from None
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not answer; see {log_path}")


def _round(
    mode: str, port: int, sessions_path: Path, seconds: float, warmup: float, think_s: float = 0
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--drive",
        mode,
        "--port",
        str(port),
        "--sessions",
        str(sessions_path),
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup),
        "--think",
        str(think_s),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def votes_bench(args: argparse.Namespace) -> dict:
    _database_fresh()
    work = Path(tempfile.mkdtemp(prefix="polyphony-bench-votes-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    study, batch, base, tuned = _study_make(raters_per_pair=5)
    _raters_make(study, "load-", 50)
    _pairs_load(study, batch, base, tuned, first=0, count=args.pairs, votes=(0, 0))
    from ratings.models import Rater

    raters = _raters_make(study, "rater-", args.raters)
    raters = list(Rater.objects.filter(pk__in=[r.pk for r in raters]).select_related("user"))
    sessions_path = work / "sessions.json"
    sessions_path.write_text(json.dumps(_sessions_make(raters)))
    _analyze()
    from django.db import connection

    connection.close()

    log_path = work / "gunicorn.log"
    server = _gunicorn_start(args.port, args.workers, args.threads, log_path)
    try:
        _round("healthz", args.port, sessions_path, 2, 0.5)  # warm every worker and thread
        _round("votes", args.port, sessions_path, 2, 0.5)
        ceilings, votes = [], []
        for _ in range(args.rounds):
            ceilings.append(_round("healthz", args.port, sessions_path, args.seconds, 1))
            votes.append(
                _round("votes", args.port, sessions_path, args.seconds, 1 + args.think, args.think)
            )
    finally:
        server.terminate()
        server.wait(timeout=30)

    def median(rounds: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    votes_per_s = median(votes, "per_s")
    ceiling_rps = median(ceilings, "per_s")
    return {
        "votes_per_s": votes_per_s,
        "p50_ms": median(votes, "p50_ms"),
        "p99_ms": median(votes, "p99_ms"),
        "ceiling_rps": ceiling_rps,
        "ratio": round(votes_per_s / ceiling_rps, 3),
        "vote_cycle_p50_ms": median(votes, "cycle_p50_ms"),
        "ceiling_p50_ms": median(ceilings, "p50_ms"),
        "ceiling_p99_ms": median(ceilings, "p99_ms"),
        "errors": sum(r["error_count"] for r in votes + ceilings),
        "first_errors": [e for r in votes + ceilings for e in r["errors"]][:5],
        "rounds": {"votes": votes, "healthz": ceilings},
        "setup": {
            "raters": args.raters,
            "pairs": args.pairs,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread)",
            "latency": "per request: the rating page and the vote post each count once",
            "think_s": args.think,
        },
        "machine": _machine(),
    }


# --assignment: pair_assign at 10k and at 1M pairs.


def _assign_times(study, raters) -> list[float]:
    from ratings.services import pair_assign

    times = []
    for rater in raters:
        started = time.perf_counter()
        assignment = pair_assign(study=study, rater=rater)
        times.append((time.perf_counter() - started) * 1000)
        if assignment is None:
            raise SystemExit(f"no pair for {rater}")
    return times


def _plans(study, rater) -> dict[str, str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ratings.services import pair_assign

    with CaptureQueriesContext(connection) as queries:
        pair_assign(study=study, rater=rater)
    plans = {}
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            sql = query["sql"].strip()
            if not sql.startswith("SELECT"):
                continue
            if "ratings_paircoverage" in sql and "FOR UPDATE" not in sql:
                name = "window"
            elif "ratings_paircoverage" in sql:
                name = "lock"
            elif "expires_at" in sql:
                name = "reservations under the lock"
            else:
                continue
            name = name if name not in plans else f"{name}, unreserved pairs"
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plans[name] = "\n".join(row[0] for row in cursor.fetchall())
    return plans


def assignment_bench(args: argparse.Namespace) -> dict:
    _database_fresh()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from ratings.models import Assignment, PairCoverage, Rater

    call_command("migrate", verbosity=0)
    target = 15
    study, batch, base, tuned = _study_make(raters_per_pair=target)
    _raters_make(study, "load-", 1_000)
    loads = {}
    results = {}
    first = 0
    for label, total in (("10k", 10_000), ("1m", 1_000_000)):
        started = time.perf_counter()
        _pairs_load(study, batch, base, tuned, first=first, count=total - first, votes=(5, 15))
        _analyze()
        loads[label] = round(time.perf_counter() - started, 1)
        print(f"loaded {label} in {loads[label]} s", file=sys.stderr, flush=True)
        first = total
        fresh = _raters_make(study, f"fresh-{label}-", args.fresh + 1)
        fresh = list(Rater.objects.filter(pk__in=[r.pk for r in fresh]))
        _assign_times(study, fresh[:10])  # warm the caches the way a running server has them
        times = _assign_times(study, fresh[10 : args.fresh])
        results[label] = {
            "p50_ms": round(statistics.median(times), 3),
            "p90_ms": round(_percentile(times, 0.9), 3),
            "calls": len(times),
        }
    plans = _plans(study, fresh[args.fresh])
    big = ("ratings_paircoverage", "ratings_pair ", "ratings_assignment", "generation_prompt")
    seq_scans = sorted(
        {
            line.strip()
            for plan in plans.values()
            for line in plan.splitlines()
            if "Seq Scan" in line and any(table in line for table in big)
        }
    )
    with connection.cursor() as cursor:
        # Every vote counts once in its pair's root-culture row.
        cursor.execute(
            "SELECT sum(votes) FROM ratings_paircoverage coverage "
            "JOIN ratings_cohort cohort ON cohort.id = coverage.cohort_id AND cohort.depth = 1"
        )
        root_votes = cursor.fetchone()[0]
    return {
        "next_pair_p50_ms_10k": results["10k"]["p50_ms"],
        "next_pair_p50_ms_1m": results["1m"]["p50_ms"],
        "ratio_1m_to_10k": round(results["1m"]["p50_ms"] / results["10k"]["p50_ms"], 3),
        "detail": results,
        "seq_scans_on_big_tables": seq_scans,
        "plan_window_1m": plans.get("window", ""),
        "plans_1m": plans,
        "data": {
            "pairs": 1_000_000,
            "coverage_rows": PairCoverage.objects.count(),
            "votes_counted_in_coverage": int(root_votes),
            "assignments": Assignment.objects.count(),
            "votes_table_rows": 0,
            "raters_per_pair": target,
            "note": "coverage holds 10M votes' worth; assignments hold one expired "
            "assignment per vote only for pairs of the two lowest vote counts (the pairs "
            "assignment reads here); the votes table is empty, as assignment never reads it",
            "load_seconds": loads,
        },
        "machine": _machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="store_true", help="pair_assign at 10k and 1M")
    parser.add_argument("--raters", type=int, default=64, help="concurrent simulated raters")
    parser.add_argument("--pairs", type=int, default=20_000, help="pairs in the votes study")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--think", type=float, default=0, help="seconds a rater pauses per pair (0: none)"
    )
    parser.add_argument("--fresh", type=int, default=300, help="fresh raters timed per size")
    parser.add_argument("--drive", choices=["votes", "healthz"], help=argparse.SUPPRESS)
    parser.add_argument("--sessions", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.drive:
        sessions = json.loads(Path(args.sessions).read_text())
        result = drive(args.drive, args.port, sessions, args.seconds, args.warmup, args.think)
        print(json.dumps(result))
        return
    result = assignment_bench(args) if args.assignment else votes_bench(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
