"""Stored scores: computing them from a study's votes, the `scores` command, and the Celery task.

Votes are made directly in the database (pairs of imported items, no images): what is under
test is what the scores make of them.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generation.models import ModelVariant, PromptBatch
from generation.models import Prompt as GenerationPrompt
from ratings.entry.services import rater_ensure
from ratings.models import (
    Answer,
    AssignmentKind,
    CoherenceScore,
    Cohort,
    Pair,
    Participation,
    Rater,
    Score,
    ScoreRun,
    StrengthScore,
    Study,
    Vote,
)
from ratings.results.selectors import score_rows, scores_latest
from ratings.results.services import scores_compute
from ratings.results.stale import scores_stale_forget
from ratings.results.tasks import scores_compute_task
from ratings.studies import cohort_ensure, study_create

CHOICES = ("a", "tie", "b", "skip")


class StudyBuilder:
    """Raters, imported pairs and votes of one study, made in bulk."""

    def __init__(self, study: Study, variant_names: tuple[str, ...] = ("base", "tuned")):
        self.study = study
        self.study.score_permutations = 200
        self.study.score_bootstrap = 200
        self.study.save()
        self.variants = [
            ModelVariant.objects.get_or_create(name=name, defaults={"role": "imported"})[0]
            for name in variant_names
        ]
        self.batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
        self.criteria = {criterion.key: criterion for criterion in study.criteria.all()}
        self._raters = itertools.count(1)
        self._items = itertools.count(1)

    def raters(self, *paths: str, count: int, flagged: bool = False) -> list[Rater]:
        made = []
        for _ in range(count):
            user = User.objects.create_user(username=f"r{next(self._raters)}-{self.study.pk}")
            rater = rater_ensure(user=user)
            rater.cohorts.set([cohort_ensure(path=path) for path in paths])
            Participation.objects.create(study=self.study, rater=rater, flagged=flagged)
            made.append(rater)
        return made

    def pairs(self, count: int, cohort: str = "india", variants: tuple[int, int] = (0, 1)):
        prompt = GenerationPrompt.objects.create(
            batch=self.batch, text="a festival", cohort=Cohort.objects.get(path=cohort)
        )
        return [
            Pair.objects.create(
                study=self.study,
                prompt=prompt,
                variant_a=self.variants[variants[0]],
                variant_b=self.variants[variants[1]],
                external_id=f"item-{next(self._items)}",
            )
            for _ in range(count)
        ]

    def vote(self, rater: Rater, pair: Pair, kind: str = AssignmentKind.PAIR, **choices: str):
        """Add one vote; criteria not named are answered `choices["rest"]` (default skip)."""
        vote = Vote.objects.create(
            study=self.study,
            pair=pair,
            rater=rater,
            shown_left="a",
            cohort_paths=rater.cohort_paths(),
            time_on_task_ms=4000,
            kind=kind,
        )
        rest = choices.pop("rest", "skip")
        Answer.objects.bulk_create(
            Answer(vote=vote, criterion=criterion, choice=choices.get(key, rest))
            for key, criterion in self.criteria.items()
        )
        return vote

    def votes(self, raters, pairs, choose) -> None:
        """Bulk votes: choose(rater_index, pair_index) gives the answer to every criterion."""
        votes = Vote.objects.bulk_create(
            Vote(
                study=self.study,
                pair=pair,
                rater=rater,
                shown_left="a",
                cohort_paths=rater.cohort_paths(),
                time_on_task_ms=4000,
            )
            for rater, pair in itertools.product(raters, pairs)
        )
        answers = []
        for vote, (r, p) in zip(
            votes, itertools.product(range(len(raters)), range(len(pairs))), strict=True
        ):
            answer = choose(r, p)
            per_criterion = answer if isinstance(answer, dict) else {}
            for key, criterion in self.criteria.items():
                choice = per_criterion.get(key, answer if isinstance(answer, str) else "skip")
                answers.append(Answer(vote=vote, criterion=criterion, choice=choice))
        Answer.objects.bulk_create(answers)


def _cell(run: ScoreRun, cohort: str, criterion: str = "representation") -> Score:
    return Score.objects.get(run=run, cohort__path=cohort, criterion__key=criterion)


def _label(run: ScoreRun, cohort: str, criterion: str = "representation") -> str:
    rows = score_rows(run=run)
    (row,) = [row for row in rows if row.cohort == cohort and row.criterion == criterion]
    return row.label


@pytest.fixture
def build(study) -> StudyBuilder:
    return StudyBuilder(study)


@pytest.fixture
def opposite_halves(build) -> StudyBuilder:
    """Tamil raters always choose a, Kerala raters always b, on the same India pairs."""
    tamil = build.raters("india:tamil", count=6)
    kerala = build.raters("india:kerala", count=6)
    pairs = build.pairs(12)
    build.votes(tamil, pairs, lambda r, p: "a")
    build.votes(kerala, pairs, lambda r, p: "b")
    return build


def test_sub_cohorts_unanimous_in_opposite_directions_split_their_parent(opposite_halves):
    run = scores_compute(study=opposite_halves.study)

    assert run.status == ScoreRun.Status.DONE
    assert _label(run, "india") == "split"
    assert _label(run, "india:tamil") == "consensus"
    assert _label(run, "india:kerala") == "consensus"
    india = _cell(run, "india")
    assert (india.count_a, india.count_b, india.n_raters) == (72, 72, 12)
    assert india.ndfu == pytest.approx(1.0)
    assert india.agreement == pytest.approx(-1.0)
    assert india.heterogeneity_p == pytest.approx(1 / 201)


def test_scores_command_prints_the_split_as_json(opposite_halves):
    out = io.StringIO()
    call_command("scores", "--study", "test-study", "--format", "json", stdout=out)

    report = json.loads(out.getvalue())
    assert set(report) == {"study", "k", "scores"}
    assert (report["study"], report["k"]) == ("test-study", 5)
    rows = {(row["cohort"], row["criterion"]): row for row in report["scores"]}
    # One row per cohort at every level, for every criterion, and nothing else.
    cohorts = {"india", "india:tamil", "india:kerala", "korea", "nigeria"}
    criteria = {"alignment", "representation", "stereotype", "offensiveness"}
    assert set(rows) == set(itertools.product(cohorts, criteria))
    india = rows[("india", "stereotype")]
    assert india["label"] == "split"
    assert india["counts"] == {"a": 72, "b": 72, "tie": 0, "skip": 0}
    assert (india["n_raters"], india["n_votes"]) == (12, 144)
    assert (india["variant_a"], india["variant_b"]) == ("base", "tuned")
    assert india["share_b"] == pytest.approx(0.5)
    assert india["share_b_low"] < 0.5 < india["share_b_high"]
    assert rows[("india:tamil", "stereotype")]["label"] == "consensus"
    assert rows[("india:kerala", "stereotype")]["counts"]["b"] == 72
    # Korea has no raters: insufficient, and nothing that tells how few it has.
    assert rows[("korea", "stereotype")] == {
        "cohort": "korea",
        "criterion": "stereotype",
        "variant_a": "base",
        "variant_b": "tuned",
        "label": "insufficient",
    }


def test_rows_below_k_show_their_label_only(build):
    tamil = build.raters("india:tamil", count=4)
    kerala = build.raters("india:kerala", count=5)
    pairs = build.pairs(4)
    build.votes(tamil + kerala, pairs, lambda r, p: "b")
    out = io.StringIO()
    call_command("scores", "--study", "test-study", "--format", "json", stdout=out)

    rows = {(r["cohort"], r["criterion"]): r for r in json.loads(out.getvalue())["scores"]}
    tamil_row = rows[("india:tamil", "alignment")]
    assert tamil_row["label"] == "insufficient"
    assert not {"counts", "n_raters", "n_votes", "share_b", "alpha", "gai"} & set(tamil_row)
    assert rows[("india:kerala", "alignment")]["counts"]["b"] == 20
    assert rows[("india", "alignment")]["n_raters"] == 9


def test_scores_command_table_names_every_cohort_and_label(opposite_halves):
    out = io.StringIO()
    call_command("scores", "--study", "test-study", stdout=out)

    text = out.getvalue()
    assert "Scores of test-study (k = 5)" in text
    lines = [line for line in text.splitlines() if "representation" in line]
    by_cohort = {line.split()[0]: line for line in lines}
    assert set(by_cohort) == {"india", "india:kerala", "india:tamil", "korea", "nigeria"}
    assert by_cohort["india"].rstrip().endswith("split")
    assert "72/0/72/0" in by_cohort["india"]
    assert by_cohort["korea"].rstrip().endswith("insufficient")
    assert "/" not in by_cohort["korea"].split("base vs tuned")[1]


def test_scores_command_refuses_an_unknown_study(study):
    with pytest.raises(CommandError, match=r"No study with the slug 'nope'\. Studies: test-study"):
        call_command("scores", "--study", "nope", "--format", "json")


def test_a_vote_counts_in_its_cohort_and_every_ancestor(build):
    tamil = build.raters("india:tamil", count=2)
    india = build.raters("india", count=1)
    both = build.raters("india:kerala", "korea", count=1)
    pairs = build.pairs(3)
    build.votes(tamil, pairs, lambda r, p: "a")
    build.votes(india, pairs, lambda r, p: "tie")
    build.votes(both, pairs, lambda r, p: "b")
    run = scores_compute(study=build.study)

    def counts(path: str) -> tuple[int, int, int, int]:
        cell = _cell(run, path, "alignment")
        return cell.count_a, cell.count_tie, cell.count_b, cell.n_raters

    assert counts("india:tamil") == (6, 0, 0, 2)
    assert counts("india:kerala") == (0, 0, 3, 1)
    # India holds its own rater's votes, both sub-cultures', and the two-culture rater once.
    assert counts("india") == (6, 3, 3, 4)
    assert counts("korea") == (0, 0, 3, 1)
    assert counts("nigeria") == (0, 0, 0, 0)
    assert run.votes_covered == 12


def test_flagged_raters_and_attention_checks_are_left_out_by_default(build):
    steady = build.raters("korea", count=5)
    careless = build.raters("korea", count=2, flagged=True)
    pairs = build.pairs(4, cohort="korea")
    build.votes(steady, pairs, lambda r, p: "b")
    build.votes(careless, pairs, lambda r, p: "a")
    check_pair = build.pairs(1, cohort="korea")[0]
    Pair.objects.filter(pk=check_pair.pk).update(is_attention_check=True)
    for rater in steady:
        build.vote(rater, check_pair, kind=AssignmentKind.IDENTICAL_CHECK, rest="a")
        build.vote(rater, pairs[0], kind=AssignmentKind.REPEAT_CHECK, rest="a")

    default = scores_compute(study=build.study)
    everyone = scores_compute(study=build.study, include_flagged=True)

    cell = _cell(default, "korea", "offensiveness")
    assert (cell.count_a, cell.count_b, cell.n_raters) == (0, 20, 5)
    assert default.votes_covered == 20 and not default.include_flagged
    cell = _cell(everyone, "korea", "offensiveness")
    assert (cell.count_a, cell.count_b, cell.n_raters) == (8, 20, 7)
    assert everyone.votes_covered == 28 and everyone.include_flagged
    assert scores_latest(study=build.study, include_flagged=False) == default


def test_a_study_without_scored_votes_gets_an_empty_run(build):
    raters = build.raters("korea", count=5)
    check = build.pairs(1, cohort="korea")[0]
    Pair.objects.filter(pk=check.pk).update(is_attention_check=True)
    for rater in raters:
        build.vote(rater, check, kind=AssignmentKind.IDENTICAL_CHECK, rest="a")

    run = scores_compute(study=build.study)
    assert (run.status, run.votes_covered, run.last_vote_id) == ("done", 0, None)
    assert not Score.objects.filter(run=run).exists()
    out = io.StringIO()
    call_command("scores", "--study", "test-study", "--format", "json", stdout=out)
    assert json.loads(out.getvalue())["scores"] == []


def test_a_computation_that_fails_leaves_a_failed_run_with_its_error(build):
    for position in range(40):
        build.study.criteria.create(key=f"extra-{position}", question="?", position=10 + position)
    build.votes(build.raters("korea", count=2), build.pairs(1, cohort="korea"), lambda r, p: "a")

    with pytest.raises(ValueError, match="at most 31 criteria"):
        scores_compute(study=build.study)
    (run,) = ScoreRun.objects.filter(study=build.study)
    assert run.status == ScoreRun.Status.FAILED
    assert "at most 31 criteria" in run.error
    assert scores_latest(study=build.study) is None


def test_a_rerun_over_the_same_votes_gives_the_same_numbers(opposite_halves):
    first = score_rows(run=scores_compute(study=opposite_halves.study))
    second = score_rows(run=scores_compute(study=opposite_halves.study))
    assert [row.public() for row in first] == [row.public() for row in second]
    assert any(row.statistics["share_b_low"] is not None for row in first)


def test_showing_scores_reads_stored_rows_and_never_recomputes(opposite_halves):
    run = scores_compute(study=opposite_halves.study)
    newcomer = opposite_halves.raters("india:tamil", count=1)
    opposite_halves.votes(
        newcomer, list(Pair.objects.filter(study=opposite_halves.study)), lambda r, p: "b"
    )

    with CaptureQueriesContext(connection) as queries:
        latest = scores_latest(study=opposite_halves.study)
        rows = score_rows(run=latest)
    assert latest == run
    assert ScoreRun.objects.count() == 1
    assert len(queries) <= 4  # the run, the study, the factions, the rows: no vote read
    assert all("ratings_vote" not in query["sql"] for query in queries.captured_queries)
    tamil = [row for row in rows if row.cohort == "india:tamil" and row.criterion == "alignment"]
    assert (tamil[0].n_raters, tamil[0].count_b) == (6, 0)  # the run's numbers, not today's


def test_pairs_formed_both_ways_round_are_scored_in_one_orientation(build):
    raters = build.raters("nigeria", count=5)
    straight = build.pairs(2, cohort="nigeria", variants=(0, 1))
    reversed_ = build.pairs(2, cohort="nigeria", variants=(1, 0))
    build.votes(raters, straight, lambda r, p: "b")  # tuned, as b of (base, tuned)
    build.votes(raters, reversed_[:1], lambda r, p: "a")  # tuned again, as a of (tuned, base)
    run = scores_compute(study=build.study)

    (cell,) = Score.objects.filter(run=run, cohort__path="nigeria", criterion__key="alignment")
    assert (cell.variant_a.name, cell.variant_b.name) == ("base", "tuned")
    assert (cell.count_a, cell.count_b) == (0, 15)


def test_coherence_and_strengths_are_stored(build):
    build.variants.append(ModelVariant.objects.create(name="third", role="imported"))
    raters = build.raters("korea", count=6)
    pairs = build.pairs(3, cohort="korea", variants=(0, 1)) + build.pairs(
        3, cohort="korea", variants=(0, 2)
    )

    def choose(r: int, p: int) -> dict[str, str]:
        # Half the raters call the stereotypical, offensive image the better representation.
        image = "b"
        return {
            "stereotype": image,
            "offensiveness": image,
            "representation": image if r % 2 else "a",
            "alignment": "b" if p >= 3 else "tie",
        }

    build.votes(raters, pairs, choose)
    run = scores_compute(study=build.study)

    coherence = CoherenceScore.objects.get(run=run, cohort__path="korea", variant_b__name="tuned")
    assert (coherence.same, coherence.tie, coherence.other, coherence.n_raters) == (9, 0, 9, 6)
    assert coherence.ndfu == pytest.approx(1.0)
    strengths = {
        s.variant.name: s
        for s in StrengthScore.objects.filter(
            run=run, cohort__path="korea", criterion__key="alignment"
        )
    }
    assert set(strengths) == {"base", "tuned", "third"}
    # "third" beat base every time; "tuned" only tied it.
    assert strengths["third"].strength > strengths["tuned"].strength > strengths["base"].strength
    # Every rater voted alike, so every resample agrees: the interval is the point.
    third = strengths["third"]
    assert (third.low, third.high) == (pytest.approx(third.strength), pytest.approx(third.strength))


def test_the_task_recomputes_on_demand_and_skips_what_a_later_run_covers(opposite_halves):
    requested = timezone.now()
    run_id = scores_compute_task(opposite_halves.study.pk)
    assert ScoreRun.objects.get(pk=run_id).status == ScoreRun.Status.DONE

    # A recomputation asked for before that run started has nothing left to do.
    assert scores_compute_task(opposite_halves.study.pk, requested_at=requested.isoformat()) is None
    later = timezone.now()
    assert scores_compute_task(opposite_halves.study.pk, requested_at=later.isoformat()) > run_id
    assert scores_compute_task(987654) is None


@pytest.fixture
def broker():
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    scores_stale_forget()
    yield client
    scores_stale_forget()


def test_a_committed_vote_schedules_one_recomputation_without_a_query(
    build, broker, django_capture_on_commit_callbacks, settings
):
    settings.POLYPHONY_SCORES_DEBOUNCE_SECONDS = 60
    raters = build.raters("korea", count=2)
    pairs = build.pairs(2, cohort="korea")

    with django_capture_on_commit_callbacks() as callbacks:
        build.vote(raters[0], pairs[0], rest="a")
    assert len(callbacks) == 1
    with CaptureQueriesContext(connection) as queries:
        callbacks[0]()
    assert queries.captured_queries == []  # marking stale asks the database nothing
    assert broker.llen("default") == 1
    message = json.loads(broker.lindex("default", 0))
    assert message["headers"]["task"] == "ratings.tasks.scores_compute_task"
    assert message["headers"]["eta"] is not None

    with django_capture_on_commit_callbacks(execute=True):
        build.vote(raters[1], pairs[1], rest="b")
    assert broker.llen("default") == 1  # the waiting recomputation will read this vote too


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_new_votes_are_scored_by_a_debounced_task_on_a_real_worker(
    worker_factory, settings, broker
):
    settings.POLYPHONY_SCORES_DEBOUNCE_SECONDS = 5
    for path in ("india", "india:tamil", "korea"):
        cohort_ensure(path=path)
    study = study_create(name="Live", slug="live", cohort_paths=["india", "india:tamil", "korea"])
    build = StudyBuilder(study)
    raters = build.raters("india:tamil", count=5)
    pairs = build.pairs(3)
    _, log_path = worker_factory(queues="default")

    started = time.monotonic()
    for rater, pair in itertools.product(raters, pairs):
        build.vote(rater, pair, rest="b")  # each commits on its own, as votes in the browser do
    assert time.monotonic() - started < 5, "the votes must land within one debounce interval"
    assert ScoreRun.objects.filter(study=study).count() == 0  # nothing computes at once

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = scores_latest(study=study)
        if run is not None:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no scores after 90 s; worker log:\n" + log_path.read_text()[-3000:])
    assert run.started_at >= timezone.now() - timedelta(seconds=60)
    assert run.votes_covered == 15
    cell = Score.objects.get(run=run, cohort__path="india", criterion__key="alignment")
    assert (cell.count_b, cell.n_raters) == (15, 5)
    time.sleep(settings.POLYPHONY_SCORES_DEBOUNCE_SECONDS + 2)
    assert ScoreRun.objects.filter(study=study).count() == 1  # fifteen votes, one recomputation
