"""Shared fixtures: the tiny model, a study with cohorts, and people with roles, made once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, Permission, User
from django.db import connection

from generation.models import ModelVariant
from ratings.entry.services import participation_consent, rater_cohorts_set, rater_ensure
from ratings.models import Rater, Study
from ratings.studies import cohort_ensure, study_create

ROOT = Path(__file__).resolve().parent.parent
TEST_COHORTS = {
    "india": "India",
    "india:tamil": "Tamil",
    "india:kerala": "Kerala",
    "korea": "Korea",
    "nigeria": "Nigeria",
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """Build the tiny Stable Diffusion model and its LoRA once per test session."""
    from generation.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(autouse=True)
def _quick_password_hashing(settings) -> None:
    """Hash test passwords with a quick hasher, as Django's testing docs advise: PBKDF2's
    million rounds cost a quarter of a second per user made or signed in. Worker and server
    processes the tests start keep the production hasher; tests/test_settings.py checks it."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    """Store every test's images in its own folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "generation.storage.ContentAddressedFileSystemStorage",
            "OPTIONS": {"location": root, "base_url": settings.MEDIA_URL},
        },
    }
    return root


@pytest.fixture
def variants(db, tiny_model) -> list[ModelVariant]:
    """A base and a LoRA variant of the tiny model, small and fast."""
    common = {"steps": 4, "width": 64, "height": 64, "guidance": 4.5}
    base = ModelVariant.objects.create(
        name="tiny-base", role="base", base_checkpoint=str(tiny_model.base), **common
    )
    tuned = ModelVariant.objects.create(
        name="tiny-lora",
        role="finetuned",
        base_checkpoint=str(tiny_model.base),
        lora_path=str(tiny_model.lora),
        **common,
    )
    return [base, tuned]


@pytest.fixture
def study(db) -> Study:
    for path, name in TEST_COHORTS.items():
        cohort_ensure(path=path, name=name)
    return study_create(
        name="Test study",
        slug="test-study",
        consent_text="You may stop at any time.",
        cohort_paths=list(TEST_COHORTS),
        raters_per_pair=3,
        # Checks come at random positions (ratings.assignment.checks): a test that wants them
        # sets a rate, so that no other test meets one by chance.
        attention_check_rate=0,
        # Signed-in users join it from its link (closed studies: tests/test_front_door.py).
        open_to_signups=True,
    )


def _rater(username: str, *cohort_paths: str) -> Rater:
    user = User.objects.create_user(username=username, password="x-" + username)
    rater = rater_ensure(user=user)
    participation_consent(study=Study.objects.get(slug="test-study"), rater=rater)
    rater_cohorts_set(rater=rater, cohorts=[cohort_ensure(path=p) for p in cohort_paths])
    return rater


@pytest.fixture
def rater_india(study) -> Rater:
    return _rater("asha", "india")


@pytest.fixture
def rater_tamil(study) -> Rater:
    return _rater("kavya", "india:tamil")


@pytest.fixture
def rater_korea(study) -> Rater:
    return _rater("minji", "korea")


@pytest.fixture
def researcher(study) -> User:
    """A researcher granted the test study (and no other)."""
    from ratings.access import study_grant

    user = User.objects.create_user(username="rosa", password="x-rosa")
    group, _ = Group.objects.get_or_create(name="researchers")
    group.permissions.add(Permission.objects.get(codename="export_study"))
    user.groups.add(group)
    study_grant(study=study, user=user)
    return user


@pytest.fixture
def outsider(db) -> User:
    return User.objects.create_user(username="otto", password="x-otto")


@pytest.fixture
def pair_factory(study, variants):
    """Make pairs for rating tests from small solid-colour images, without rendering."""
    import io

    from PIL import Image as PILImage

    from generation.models import Image, Prompt, PromptBatch
    from generation.rendering.services import image_file_store, pairs_form
    from ratings.models import Cohort, Pair

    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    batch.variants.set(variants)
    counter = iter(range(1, 10_000))

    def make(cohort_path: str = "india", text: str = "a plate of idli") -> Pair:
        n = next(counter)
        prompt = Prompt.objects.create(
            batch=batch, text=f"{text} #{n}", cohort=Cohort.objects.get(path=cohort_path)
        )
        for shade, variant in enumerate(variants):
            buffer = io.BytesIO()
            PILImage.new("RGB", (8, 8), (n % 256, shade * 100, 50)).save(buffer, format="PNG")
            name = image_file_store(data=buffer.getvalue(), name=f"{n:04d}{shade}.png")
            Image.objects.create(
                prompt=prompt,
                variant=variant,
                seed=987_000 + n,
                status=Image.Status.DONE,
                file=name,
            )
        (pair,) = pairs_form(prompt=prompt)
        return pair

    return make


def _test_database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    # A socket folder (the embedded server) goes in the host part percent-encoded.
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    return f"postgres://{db['USER']}{password}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_factory(media_root, tmp_path):
    """Start real Celery workers on the gpu queue, against the test database and media.

    Each call starts one worker in its own process group and returns (process, log path);
    `queues` names the queues it consumes (comma-separated; "default" for scores) and `env`
    overrides settings for that worker. Every worker is stopped after the test.
    """
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()  # no earlier tasks
    workers: list[subprocess.Popen] = []

    def start(queues: str = "gpu", **env: str) -> tuple[subprocess.Popen, Path]:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        environ = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(media_root),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        command = [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "webapp",
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "--prefetch-multiplier",
            "1",
            "--loglevel",
            "INFO",
            "-n",
            f"test-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        with log_path.open("w") as log:
            worker = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        workers.append(worker)
        return worker, log_path

    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django would take
    # every ORM call here for one made inside async code. None is: allow them while it runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is missing at {CHROMIUM}; `make test` installs it.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
