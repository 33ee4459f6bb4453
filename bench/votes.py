"""Benchmark: votes per second through the rating page, and pair assignment at scale.

    .venv/bin/python bench/votes.py [--raters 64] [--seconds 15] [--rounds 3] [--think 0]
    .venv/bin/python bench/votes.py --assignment

Default mode serves the app with gunicorn on PostgreSQL (its own database, made afresh and
migrated; sessions in Redis, as with CACHE_URL), seeds a study with pairs (rows pointing at a
pool of tiny stored images: rendering is not what is measured) and signed-in raters with consent
and a cohort. A second process then drives N raters at once over loopback, exactly as the
browser with rate.js does: a rater loads the rating page once, then posts one vote per pair and
is answered with the next pair as JSON (images come from the media server or S3 and are not
fetched), until the study's quota sends them to the completion page (loaded too) and a fresh
rater takes their place. Raters vote at once (or after --think seconds, to see latency below
saturation). Rounds alternate with rounds against /healthz, a trivial view of the same server,
whose requests per second are the ceiling; medians over rounds are reported, with the CPU time
the app and its database backends spent per vote and per /healthz answer (a ratio that other
work on shared cores moves much less than throughput). Unless --no-floor, rounds against three
floor views of the same server follow (bench/floor_urls.py: a signed-in POST of a vote's form
that stores nothing, one row, or a vote row with four answers), so the vote's ratio can be
read against the ratio of the least any vote view must do.

--assignment loads 10,000 pairs, then 1,000,000 pairs with 10,000,000 votes' worth of coverage
(SQL generate_series, not the ORM), with an expired assignment per vote on the least voted
pairs, the ones assignment reads; the votes table stays empty (assignment reads only the
rater's own votes). It times pair_assign for fresh raters at both sizes and prints the plans of
its statements at 1M as the app runs them (prepared, planned once for any parameters).

Uses DATABASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/polyphony_bench_votes);
the database is dropped and made again on every run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from _support import FLOOR_TABLES, FLOORS, ROOT, database_create, environment_defaults, machine

environment_defaults(
    database="polyphony_bench_votes",
    broker_db=13,
    # Sessions read from Redis (cached_db): see webapp/settings.py.
    CACHE_URL="redis://127.0.0.1:6379/12",
    ALLOWED_HOSTS="127.0.0.1,localhost",
    SESSION_COOKIE_SECURE="false",
    CSRF_COOKIE_SECURE="false",
    SECURE_SSL_REDIRECT="false",
)

SLUG = "bench-votes"
ROOT_CULTURES = ("india", "korea", "nigeria", "brazil")
SUB_CULTURES = ("india:tamil", "india:kerala")
# The pair pool: pair k shows base image k % POOL and fine-tuned image (k // POOL + k) % POOL,
# so a million pairs stay distinct with 2 x POOL image rows, and an image recurs only every POOL
# pairs: a rater is never served an image twice, so a block of pairs sharing one base image
# (k // POOL, as before) would end a rater's work after one pair of each block.
POOL = 1_100
ASSIGNMENT_RE = re.compile(rb'name="assignment" value="([0-9a-f-]+)"')
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
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
        self.done = 0  # votes, or healthz answers, in the measured window
        self.all = 0  # the same since the round started, warm-up included
        self.page_ms: list[float] = []  # rating and completion pages, once per rater each
        self.completed = 0  # raters who met the quota
        self.errors: list[str] = []

    def counts(self, started: float) -> bool:
        return self.measure_from <= started and time.perf_counter() <= self.deadline


def _cookies_update(cookies: dict[str, str], headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        if name == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key] = rest.split(";", 1)[0]


def _cookie(cookies: dict[str, str]) -> str:
    return "; ".join(f"{key}={value}" for key, value in cookies.items())


async def _rater_drive(
    port: int, sessions: list[str], tally: _Tally, rng: random.Random, think_s: float
) -> None:
    """Rate as a browser with rate.js does, one signed-in rater after another.

    A rater loads the rating page once, then posts one vote per pair, each answered with the
    next pair as JSON (whose images the browser fetched ahead; images come from a media server
    or S3, not from this app, and are not fetched here). At the quota the answer sends them to
    the completion page, which is loaded too, and the next rater starts.
    """
    connection = _Connection(port)
    try:
        # With a think time, raters start spread over one and pause about that long per pair.
        await asyncio.sleep(rng.uniform(0, think_s))
        assignment = token = cookies = None
        criteria: list[str] = []
        while time.perf_counter() < tally.deadline:
            started = time.perf_counter()
            if cookies is None:
                if not sessions:
                    tally.errors.append("no signed-in raters left: make more (--raters-made)")
                    return
                cookies = {"sessionid": sessions.pop()}
            if assignment is None:
                status, headers, page = await connection.request(
                    "GET", f"/s/{SLUG}/rate/", {"Cookie": _cookie(cookies)}
                )
                _cookies_update(cookies, headers)
                if tally.counts(started):
                    tally.page_ms.append((time.perf_counter() - started) * 1000)
                found, token = ASSIGNMENT_RE.search(page), CSRF_RE.search(page)
                if status != 200 or found is None or token is None:
                    tally.errors.append(f"rate page {status}")
                    return
                assignment = found.group(1).decode()
                token = token.group(1).decode()
                criteria = sorted({key.decode() for key in CRITERION_RE.findall(page)})
                continue
            form = {"csrfmiddlewaretoken": token, "assignment": assignment}
            for key in criteria:
                form[f"answer_{key}"] = rng.choice(SCREEN_ANSWERS)
            status, headers, body = await connection.request(
                "POST",
                f"/s/{SLUG}/vote/",
                {"Cookie": _cookie(cookies), **JSON_HEADERS},
                urlencode(form).encode(),
            )
            voted = time.perf_counter()
            _cookies_update(cookies, headers)
            if status != 200:
                tally.errors.append(f"vote {status}: {body[:200]!r}")
                return
            answer = json.loads(body)
            tally.all += 1
            if tally.counts(started):
                tally.latencies_ms.append((voted - started) * 1000)
                tally.done += 1
            assignment = answer.get("assignment")
            if assignment is None:
                # The quota met: the completion page, then the next rater. (Or no work left.)
                started = time.perf_counter()
                status, _, _ = await connection.request(
                    "GET", answer["redirect"], {"Cookie": _cookie(cookies)}
                )
                if tally.counts(started):
                    tally.page_ms.append((time.perf_counter() - started) * 1000)
                if answer["redirect"].endswith("/done/"):
                    tally.completed += 1
                    cookies = None
                else:
                    tally.errors.append(f"no work left for a rater ({status})")
                    return
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))
    finally:
        connection.close()


async def _repeat_drive(
    port: int,
    tally: _Tally,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes = b"",
    expected: bytes | None = None,
) -> None:
    """Send one request over and over until the deadline, counting its 200 answers.

    An answer other than 200 (or, with `expected`, another body) is an error and ends the client.
    """
    connection = _Connection(port)
    try:
        while time.perf_counter() < tally.deadline:
            started = time.perf_counter()
            status, _, answer = await connection.request(method, target, headers, body)
            if status != 200 or (expected is not None and answer != expected):
                tally.errors.append(f"{target} {status}: {answer[:200]!r}")
                return
            tally.all += 1
            if tally.counts(started):
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                tally.done += 1
    finally:
        connection.close()


async def _floor_drive(port: int, sessions: list[str], tally: _Tally, target: str) -> None:
    """Post vote-shaped forms to a floor view (bench/floor_urls.py) as one signed-in rater."""
    token = secrets.token_hex(16)  # a CSRF secret of 32 characters, as cookie and form token
    form = {"csrfmiddlewaretoken": token, "assignment": str(uuid.uuid4())}
    form.update({f"answer_criterion_{index}": "tie" for index in range(4)})
    headers = {"Cookie": f"sessionid={sessions[0]}; csrftoken={token}", **JSON_HEADERS}
    await _repeat_drive(port, tally, "POST", target, headers, urlencode(form).encode())


async def _healthz_drive(port: int, tally: _Tally) -> None:
    await _repeat_drive(port, tally, "GET", "/healthz", {}, expected=b"ok")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def drive(
    mode: str, port: int, sessions: list[list[str]], seconds: float, warmup: float, think_s: float
) -> dict:
    """Run one round of N concurrent clients; return what they measured."""

    async def run() -> _Tally:
        start = time.perf_counter()
        tally = _Tally(start + warmup, start + warmup + seconds)
        rng = random.Random(0)
        if mode == "votes":
            clients = [_rater_drive(port, keys, tally, rng, think_s) for keys in sessions]
        elif mode in FLOORS:
            clients = [_floor_drive(port, keys, tally, FLOORS[mode]) for keys in sessions]
        else:
            clients = [_healthz_drive(port, tally) for _ in sessions]
        await asyncio.gather(*clients)
        return tally

    tally = asyncio.run(run())
    return {
        "per_s": tally.done / seconds,
        "p50_ms": _percentile(tally.latencies_ms, 0.50),
        "p99_ms": _percentile(tally.latencies_ms, 0.99),
        "pages": len(tally.page_ms),
        "page_p50_ms": _percentile(tally.page_ms, 0.50),
        "raters_completed": tally.completed,
        "requests": len(tally.latencies_ms),
        "all": tally.all,
        "errors": tally.errors[:5],
        "error_count": len(tally.errors),
    }


# Setting up: a fresh database, a study, pairs and raters, all in bulk.


def _study_make(raters_per_pair: int, quota: int = 30_000):
    from generation.models import Image, ModelVariant, Prompt, PromptBatch
    from ratings.studies import cohort_ensure, study_create

    cohorts = [cohort_ensure(path=path) for path in (*ROOT_CULTURES, *SUB_CULTURES)]
    study = study_create(
        name="Bench votes",
        slug=SLUG,
        cohort_paths=[cohort.path for cohort in cohorts],
        raters_per_pair=raters_per_pair,
        pairs_per_rater=quota,
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
                image_b_id, variant_a_id, variant_b_id, is_attention_check, external_id,
                created_at)
            SELECT %s, prompts.id, seed, (%s::bigint[])[1 + (prompts.n * 4 + seed) %% %s],
                (%s::bigint[])[1 + ((prompts.n * 4 + seed) / %s + prompts.n * 4 + seed) %% %s],
                %s, %s, false, '', now()
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
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore

    keys = []
    for rater in raters:
        store = SessionStore()
        store[SESSION_KEY] = str(rater.user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = rater.user.get_session_auth_hash()
        store.create()
        keys.append(store.session_key)
    return keys


def _analyze(*, database_only: bool = False) -> None:
    """VACUUM and ANALYZE the bench database, through Django's connection or (with the app
    serving, Django's connection closed) a connection of its own."""
    if not database_only:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")
        return
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as connection:
        connection.execute("VACUUM (ANALYZE)")


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
    # The app's settings with three floor views added (bench/floor_urls.py).
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.floor_settings"}
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
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


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Return the CPU seconds (user + system) each live process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def _server_pids(server: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [server.pid, *map(int, children.read_text().split())] if children.exists() else []


def _backend_pids() -> list[int]:
    """Return the PostgreSQL backends serving the bench database (the app's connections)."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    ) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def _measured_round(server: subprocess.Popen, *args, **kwargs) -> dict:
    """Run a round and add the CPU the app and its database backends spent per answer.

    CPU time does not depend on what else shares the machine, so it compares vote and
    /healthz costs where throughput, on shared cores, is noisy. Backends opened during the
    round count from zero; one closed during it (CONN_MAX_AGE) is missed.
    """
    app_before = _cpu_seconds(_server_pids(server))
    backends_before = _cpu_seconds(_backend_pids())
    result = _round(*args, **kwargs)
    app = _cpu_seconds(_server_pids(server))
    backends = _cpu_seconds(_backend_pids())
    answers = max(result["all"], 1)
    result["app_cpu_ms"] = 1000 * sum(t - app_before.get(p, 0) for p, t in app.items()) / answers
    result["db_cpu_ms"] = (
        1000 * sum(t - backends_before.get(p, 0) for p, t in backends.items()) / answers
    )
    return result


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
    database_create(fresh=True)
    work = Path(tempfile.mkdtemp(prefix="polyphony-bench-votes-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in FLOOR_TABLES:
            cursor.execute(statement)
    if os.environ.get("CACHE_URL"):
        from django.core.cache import cache

        cache.clear()  # sessions of an earlier run
    study, batch, base, tuned = _study_make(raters_per_pair=5, quota=args.quota)
    _raters_make(study, "load-", 50)
    _pairs_load(study, batch, base, tuned, first=0, count=args.pairs, votes=(0, 0))
    from ratings.models import Rater

    # Each round has raters of its own: a rater who met the quota is done for good.
    vote_rounds = 1 + args.rounds
    raters = _raters_make(study, "rater-", args.raters * args.raters_per_client * vote_rounds)
    raters = list(Rater.objects.filter(pk__in=[r.pk for r in raters]).select_related("user"))
    keys = _sessions_make(raters)
    per_round = args.raters * args.raters_per_client
    session_paths = []
    for number in range(vote_rounds):
        chunk = keys[number * per_round : (number + 1) * per_round]
        path = work / f"sessions-{number}.json"
        path.write_text(json.dumps([chunk[client :: args.raters] for client in range(args.raters)]))
        session_paths.append(path)
    _analyze()
    connection.close()

    floors = list(FLOORS) if args.floor else []
    log_path = work / "gunicorn.log"
    server = _gunicorn_start(args.port, args.workers, args.threads, log_path)
    try:
        _round("healthz", args.port, session_paths[0], 2, 0.5)  # warm every worker and thread
        _round("votes", args.port, session_paths[0], 3, 0.5)
        for floor in floors:
            _round(floor, args.port, session_paths[0], 2, 0.5)
        # Statistics of tables that held nothing at the start (votes, assignments), as
        # autovacuum keeps them on a live study: plans made for empty tables read whole tables.
        _analyze(database_only=True)
        ceilings, votes = [], []
        floor_rounds: dict[str, list[dict]] = {floor: [] for floor in floors}
        for number in range(args.rounds):
            ceilings.append(
                _measured_round(server, "healthz", args.port, session_paths[0], args.seconds, 1)
            )
            votes.append(
                _measured_round(
                    server,
                    "votes",
                    args.port,
                    session_paths[1 + number],
                    args.seconds,
                    1 + args.think,
                    args.think,
                )
            )
            for floor in floors:
                floor_rounds[floor].append(
                    _measured_round(server, floor, args.port, session_paths[0], args.seconds, 1)
                )
    finally:
        server.terminate()
        server.wait(timeout=30)

    def median(rounds: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    floor_runs = [each for rounds in floor_rounds.values() for each in rounds]
    votes_per_s = median(votes, "per_s")
    ceiling_rps = median(ceilings, "per_s")
    vote_cpu = median(votes, "app_cpu_ms") + median(votes, "db_cpu_ms")
    healthz_cpu = median(ceilings, "app_cpu_ms") + median(ceilings, "db_cpu_ms")
    return {
        "votes_per_s": votes_per_s,
        "p50_ms": median(votes, "p50_ms"),
        "p99_ms": median(votes, "p99_ms"),
        "ceiling_rps": ceiling_rps,
        "ratio": round(votes_per_s / ceiling_rps, 3),
        "ceiling_p50_ms": median(ceilings, "p50_ms"),
        "ceiling_p99_ms": median(ceilings, "p99_ms"),
        "page_p50_ms": median(votes, "page_p50_ms"),
        # CPU per answer, app (gunicorn) + database backends: a ratio that noise does not move.
        "cpu_ratio": round(healthz_cpu / vote_cpu, 3) if vote_cpu else None,
        "vote_cpu_ms": {"app": median(votes, "app_cpu_ms"), "db": median(votes, "db_cpu_ms")},
        "healthz_cpu_ms": {
            "app": median(ceilings, "app_cpu_ms"),
            "db": median(ceilings, "db_cpu_ms"),
        },
        # What a view that does a part of a vote's work reaches on the same server, each
        # with its ratio to the ceiling: see bench/floor_urls.py.
        "floors": {
            floor: {
                "per_s": median(rounds, "per_s"),
                "p50_ms": median(rounds, "p50_ms"),
                "p99_ms": median(rounds, "p99_ms"),
                "ratio": round(median(rounds, "per_s") / ceiling_rps, 3),
                "cpu_ms": {"app": median(rounds, "app_cpu_ms"), "db": median(rounds, "db_cpu_ms")},
            }
            for floor, rounds in floor_rounds.items()
        },
        "errors": sum(r["error_count"] for r in votes + ceilings + floor_runs),
        "first_errors": [e for r in votes + ceilings + floor_runs for e in r["errors"]][:5],
        "rounds": {"votes": votes, "healthz": ceilings, **floor_rounds},
        "setup": {
            "raters": args.raters,
            "quota": args.quota,
            "pairs": args.pairs,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread)",
            "latency": "per vote: one POST answered with the next pair as JSON; each rater "
            "also loads the rating page once and the completion page once (page_p50_ms)",
            "think_s": args.think,
        },
        "machine": machine(),
    }


# --assignment: pair_assign at 10k and at 1M pairs.


def _assign_times(study, raters) -> tuple[list[float], float]:
    """Time pair_assign for each rater; return the wall times (ms) and the CPU per call (ms).

    The CPU is this process's and its database backend's: shared cores make wall times noisy,
    CPU time much less so.
    """
    from django.db import connection

    from ratings.assignment.services import pair_assign

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    backend_before = _cpu_seconds([backend]).get(backend, 0.0)
    cpu_before = time.process_time()
    times = []
    for rater in raters:
        started = time.perf_counter()
        assignment = pair_assign(study=study, rater=rater)
        times.append((time.perf_counter() - started) * 1000)
        if assignment is None:
            raise SystemExit(f"no pair for {rater}")
    cpu = time.process_time() - cpu_before
    cpu += _cpu_seconds([backend]).get(backend, 0.0) - backend_before
    return times, 1000 * cpu / max(len(raters), 1)


def _generic_plan(sql: str, params: dict, *, analyze: bool) -> str:
    """EXPLAIN a statement as the app runs it: prepared, planned once for any parameters."""
    from django.db import connection

    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    prepared = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match.group(1)) + 1}", sql)
    options = "ANALYZE, BUFFERS" if analyze else "COSTS"
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE planned AS {prepared}")
        values = ", ".join(["%s"] * len(names))
        cursor.execute(f"EXPLAIN ({options}) EXECUTE planned({values})", [params[n] for n in names])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE planned")
    return plan


def _plans(study, rater) -> dict[str, str]:
    """Return the plans of pair_assign's statements, run (but the insert) and timed."""
    from django.db import connection

    from ratings.assignment.services import pair_assign

    statements: list[tuple[str, dict]] = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        pair_assign(study=study, rater=rater)
    plans = {}
    for sql, params in statements:
        if "WITH study AS" in sql:
            name, analyze = "state (the rater in the study, one statement)", True
        elif "FOR UPDATE" in sql and "ratings_paircoverage" in sql:
            name, analyze = "claim (the window read and the lock of its best row)", True
        elif sql.lstrip().startswith("WITH new AS (INSERT INTO ratings_assignment"):
            # Not run: it would reserve a second pair.
            name, analyze = "reserve (count under the lock, insert)", False
        elif "ratings_paircoverage" in sql:
            name, analyze = "window", True
        else:
            continue
        plans[name if name not in plans else f"{name}, again"] = _generic_plan(
            sql, params, analyze=analyze
        )
    return plans


def assignment_bench(args: argparse.Namespace) -> dict:
    database_create(fresh=True)
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
        _assign_times(study, fresh[:50])  # warm the caches the way a running server has them
        times, cpu_ms = _assign_times(study, fresh[50 : args.fresh])
        results[label] = {
            "p50_ms": round(statistics.median(times), 3),
            "p90_ms": round(_percentile(times, 0.9), 3),
            "cpu_ms_per_call": round(cpu_ms, 3),
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
        "cpu_ratio_1m_to_10k": round(
            results["1m"]["cpu_ms_per_call"] / results["10k"]["cpu_ms_per_call"], 3
        ),
        "detail": results,
        "seq_scans_on_big_tables": seq_scans,
        "plan_claim_1m": plans.get("claim (the window read and the lock of its best row)", ""),
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
            "assignment reads here); the votes table is empty: assignment reads only the "
            "rater's own votes",
            "load_seconds": loads,
        },
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="store_true", help="pair_assign at 10k and 1M")
    parser.add_argument("--raters", type=int, default=64, help="concurrent simulated raters")
    parser.add_argument("--pairs", type=int, default=20_000, help="pairs in the votes study")
    parser.add_argument("--quota", type=int, default=40, help="pairs per rater in the study")
    parser.add_argument(
        "--raters-per-client", type=int, default=16, help="raters made per client and round"
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor views' rounds (bench/floor_urls.py)",
    )
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    # Chosen by measurement on 2 cores (bench/RESULTS.md): 3 x 2 served the most votes.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--think", type=float, default=0, help="seconds a rater pauses per pair (0: none)"
    )
    parser.add_argument("--fresh", type=int, default=500, help="fresh raters timed per size")
    parser.add_argument("--drive", choices=["votes", "healthz", *FLOORS], help=argparse.SUPPRESS)
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
