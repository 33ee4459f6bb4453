"""The demo as a newcomer meets it, in real Chromium with real Celery workers: the demo setup,
a rater rating ten pairs by keyboard without waiting, and "Recompute now" showing the votes."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from generation.models import Image, PromptBatch
from ratings.models import Pair, Participation, Score, ScoreRun, Vote

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait(condition, what: str, timeout_s: float, logs=()) -> float:
    """Wait for `condition()`; return the seconds it took, or fail with the workers' logs."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            tails = "\n".join(path.read_text()[-2000:] for path in logs)
            pytest.fail(f"{what} took over {timeout_s} s\n{tails}")
        time.sleep(0.5)
    return time.monotonic() - started


def _sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()


def test_demo_rater_rates_ten_pairs_and_recompute_shows_the_votes(
    browser, live_server, settings, tmp_path, worker_factory
):
    settings.POLYPHONY_TINY_MODEL_DIR = tmp_path / "tiny"
    # The demo's settings and batch, its images smaller still: two cores are shared in tests.
    call_command("demo_setup", no_showcase=True, size=32, steps=4)
    batch = PromptBatch.objects.get(study__slug="demo")
    gpu, gpu_log = worker_factory("gpu")
    scores, scores_log = worker_factory("default")
    logs = (gpu_log, scores_log)
    # Twelve pairs rendered (small and in few steps): a rater of every culture rates ten.
    _wait(
        lambda: Pair.objects.filter(study__slug="demo").count() >= 12,
        "rendering twelve pairs",
        240,
        logs,
    )
    assert not Image.objects.filter(prompt__batch=batch, status="failed").exists()

    rater = browser.new_context(viewport={"width": 1200, "height": 900})
    page = rater.new_page()
    try:
        _sign_in(page, f"{live_server.url}/s/demo/", "rater", "polyphony-rater")
        page.get_by_role("button", name="I agree, start rating").click()
        for culture in ("China", "India", "Korea", "Mexico", "Nigeria"):
            page.get_by_label(culture, exact=True).check()
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Skip").click()  # the optional questions
        for _ in range(10):
            page.wait_for_selector("h1.prompt")
            assignment = page.input_value("input[name=assignment]")
            for key in ("2", "1", "3", "2"):  # briskly, by keyboard, as a person trying it
                page.keyboard.press(key)
            page.wait_for_timeout(600)
            page.keyboard.press("Enter")
            page.wait_for_function(
                "id => !document.querySelector('input[name=assignment]') || "
                "document.querySelector('input[name=assignment]').value !== id",
                arg=assignment,
            )
    finally:
        rater.close()
    votes = Vote.objects.filter(study__slug="demo", rater__user__username="rater")
    assert votes.count() == 10
    # Attention checks are served in the demo too; the scores count the votes on real pairs.
    scored_votes = votes.filter(kind="pair").count()
    assert scored_votes >= 5
    # The demo's settings: rating briskly flags no one, so the votes count in the scores.
    assert not Participation.objects.get(study__slug="demo", rater__user__username="rater").flagged

    researcher = browser.new_context(viewport={"width": 1280, "height": 900})
    page = researcher.new_page()
    try:
        _sign_in(page, f"{live_server.url}/studies/demo/", "researcher", "polyphony-research")
        page.wait_for_selector("h1:has-text('Polyphony demo')")
        pressed = time.monotonic()
        page.get_by_role("button", name="Recompute now").click()
        page.wait_for_selector("text=Recomputing the scores, asked at")
        # The page looks again by itself until the run lands.
        page.wait_for_selector(f"text=covering {scored_votes} votes", timeout=30_000)
        landed = time.monotonic() - pressed
        # Each vote counts in every culture its rater holds: one rater, ten votes (k is 1 here).
        totals = page.locator("section.cohort .cohort-totals").all_inner_texts()
        assert len(totals) == 5 and set(totals) == {f"1 rater · {scored_votes} votes"}
    except Exception:
        print(scores_log.read_text()[-3000:])
        raise
    finally:
        researcher.close()
    assert landed < 30
    run = ScoreRun.objects.filter(study__slug="demo", status="done").latest("computed_at")
    assert run.votes_covered == scored_votes
    top_level = Score.objects.filter(run=run, criterion__key="alignment").exclude(
        cohort__path__contains=":"
    )
    assert set(top_level.values_list("n_votes", flat=True)) == {scored_votes}
    assert gpu.poll() is None and scores.poll() is None
