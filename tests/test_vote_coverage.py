"""A pair's coverage never counts past the cohort's target, however its votes arrive.

Two ways a vote can come for a pair whose place is already filled: a reservation that timed
out while the rater looked at the pair (and someone else took the place), and a sub-culture's
reservation next to its culture's (a Tamil vote counts in India too, and Tamil has a target
of its own). The decision: such a vote is stored and scored like any other (a rater's work is
never refused for a race they cannot see), and coverage, which counts places filled for
assignment, stays at the target.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User

from ratings.assignment.services import pair_assign
from ratings.entry.services import participation_consent, rater_cohorts_set, rater_ensure
from ratings.models import Cohort, PairCoverage, Rater, Study, Vote
from ratings.results.selectors import votes_for_scoring
from ratings.voting.services import vote_cast

ANSWERS = {"alignment": "1", "representation": "2", "stereotype": "tie", "offensiveness": "skip"}


def _rater(name: str, *cohort_paths: str) -> Rater:
    user = User.objects.create_user(username=name, password="x-" + name)
    rater = rater_ensure(user=user)
    participation_consent(study=Study.objects.get(slug="test-study"), rater=rater)
    rater_cohorts_set(rater=rater, cohorts=[Cohort.objects.get(path=path) for path in cohort_paths])
    return rater


def _votes(pair, path: str) -> int:
    return PairCoverage.objects.get(pair=pair, cohort__path=path).votes


def test_a_vote_on_a_reservation_that_timed_out_is_kept_but_fills_no_second_place(pair_factory):
    pair = pair_factory()
    study = pair.study
    Study.objects.filter(pk=study.pk).update(raters_per_pair=1)
    study.refresh_from_db()
    late, early = _rater("ann", "india"), _rater("bob", "india")
    held = pair_assign(study=study, rater=late)
    after_timeout = held.expires_at + timedelta(seconds=1)
    taken = pair_assign(study=study, rater=early, now=after_timeout)
    assert taken.pair == pair  # the place went back to the pool and was taken
    vote_cast(rater=early, assignment_id=taken.pk, answers=ANSWERS, now=after_timeout)
    assert _votes(pair, "india") == 1

    # The first rater answers at last: their vote is stored, the pair stays at its target.
    vote = vote_cast(rater=late, assignment_id=held.pk, answers=ANSWERS, now=after_timeout)
    assert Vote.objects.filter(pair=pair).count() == 2
    assert _votes(pair, "india") == 1
    assert vote in votes_for_scoring(study=study)


def test_a_sub_cultures_vote_on_a_pair_its_culture_filled_counts_for_it_alone(pair_factory):
    pair = pair_factory(cohort_path="india")
    study = pair.study
    Study.objects.filter(pk=study.pk).update(raters_per_pair=1)
    study.refresh_from_db()
    indian, tamil = _rater("asha", "india"), _rater("kavya", "india:tamil")
    for_india = pair_assign(study=study, rater=indian)
    # India's one place is held; Tamil's own place is open, so a Tamil rater gets the pair.
    for_tamil = pair_assign(study=study, rater=tamil)
    assert for_india.pair == for_tamil.pair == pair
    vote_cast(rater=indian, assignment_id=for_india.pk, answers=ANSWERS)
    vote_cast(rater=tamil, assignment_id=for_tamil.pk, answers=ANSWERS)
    assert Vote.objects.filter(pair=pair).count() == 2
    assert (_votes(pair, "india"), _votes(pair, "india:tamil")) == (1, 1)


def test_coverage_keeps_counting_below_the_target(pair_factory):
    pair = pair_factory(cohort_path="india")
    study = pair.study  # raters_per_pair = 3
    raters = [_rater(f"r{n}", "india") for n in range(3)]
    for rater in raters:
        vote_cast(
            rater=rater,
            assignment_id=pair_assign(study=study, rater=rater).pk,
            answers=ANSWERS,
        )
    assert _votes(pair, "india") == 3
    assert pair_assign(study=study, rater=_rater("r3", "india")) is None
