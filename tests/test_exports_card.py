"""Dataset cards: what every export says about itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from ratings.exports.cards import dataset_card
from ratings.exports.score_tables import SCORE_COLUMNS
from ratings.exports.votes import VOTES_LONG_COLUMNS
from ratings.models import Criterion, Pair, Participation, ScoreRun, Vote, VoteSource
from tests.test_exports_scores import _scored
from tests.test_exports_votes import _raters, _vote, imported_pair_make


@pytest.fixture
def imported_pair(study) -> Pair:
    return imported_pair_make(study)


def _votes(study, pair) -> None:
    groups = {"india:tamil": 6, "india:kerala": 3, "india": 3, "korea": 2, "nigeria": 5}
    day = 1
    for path, count in groups.items():
        for rater in _raters(study, path.replace(":", "-"), count):
            _vote(
                study=study,
                rater=rater,
                pair=pair,
                choices={"alignment": "a", "representation": "b"},
                cohort_paths=[path],
                source=VoteSource.IMPORT if path == "korea" else VoteSource.BROWSER,
                created_at=datetime(2025, 4, day, 8, 0, tzinfo=UTC),
            )
            day += 1


def test_the_vote_card_names_study_wording_dates_counts_k_and_what_k_hid(study, imported_pair):
    Criterion.objects.filter(study=study, key="representation").update(
        question="Which image better shows {culture} as you know it?"
    )
    _votes(study, imported_pair)
    Participation.objects.filter(study=study, rater__user__username="india0").update(flagged=True)
    card = dataset_card(study=study, table="votes_long")
    assert card.startswith("# Test study: votes in long form")
    assert "`test-study`" in card
    assert "| `representation` | Which image better shows {culture} as you know it? |" in card
    assert "from 2025-04-01 08:00:00 UTC to 2025-04-19 08:00:00 UTC" in card
    assert "- Rows: 38" in card
    assert "- Votes: 19; raters: 19; pairs: 1" in card
    assert "(`source` = import): 2" in card
    assert "left out of scores): 1" in card
    assert "k = 5" in card
    assert "  - `india:kerala` shown as `india`" in card
    assert "Left out (the raters keep their other labels, or an empty `cohort`): `korea`, " in card
    for name in VOTES_LONG_COLUMNS:
        assert f"| `{name}` |" in card


def test_the_wide_card_lists_a_column_per_criterion(study, imported_pair):
    _votes(study, imported_pair)
    card = dataset_card(study=study, table="votes_wide")
    assert "- Rows: 19" in card
    assert "| `stereotype` | text | The answer to 'Which image is more stereotypical?'" in card
    assert "| `criterion` |" not in card


def test_the_scores_card_names_the_run_and_the_suppressed_cohorts(study, imported_pair):
    _votes(study, imported_pair)
    run = _scored(study, india=15, tamil=12, kerala=3)
    # The run covers the first ten votes only: the card's dates are theirs.
    tenth = Vote.objects.filter(study=study).order_by("pk")[9]
    ScoreRun.objects.filter(pk=run.pk).update(last_vote_id=tenth.pk)
    card = dataset_card(study=study, table="scores")
    assert f"- Score run {run.pk}, computed at 2025-06-02 09:30:00 UTC" in card
    assert f"- Votes covered: 812 (every scored vote of the study up to vote id {tenth.pk})" in card
    assert "cast from 2025-04-01 08:00:00 UTC to 2025-04-10 08:00:00 UTC" in card
    assert "1000 permutations, 1000 rater-cluster bootstrap resamples, seed 7" in card
    assert "- Rows: 10, of which suppressed: 4" in card
    assert "| scores | `india:kerala` | sd14 vs sd14-lora-india | fewer than k raters |" in card
    assert "| scores | `india:tamil` | sd14 vs sd14-lora-india | complementary |" in card
    # The scores card lists the scores table's suppression, the split report's card both.
    assert "| coherence |" not in card
    assert "| coherence | `india:tamil` |" in dataset_card(study=study, table="splits")
    assert "`split`: rater heterogeneity p < 0.01; two factions of raters fit better" in card
    assert "nDFU and van der Eijk's A are reported, never deciding" in card
    for column in SCORE_COLUMNS:
        assert f"| `{column.name}` |" in card


def test_a_card_without_scores_says_so(study):
    card = dataset_card(study=study, table="splits")
    assert "No scores have been computed for this study yet" in card


def test_the_card_downloads_next_to_each_export(study, researcher):
    client = Client()
    client.force_login(researcher)
    for table in ("votes_long", "votes_wide", "scores", "splits"):
        response = client.get(reverse("ratings:export_card", args=[study.slug, table]))
        assert response.status_code == 200
        assert response["Content-Type"] == "text/markdown; charset=utf-8"
        assert response["Content-Disposition"] == f'attachment; filename="test-study-{table}.md"'
        assert response.content.decode().startswith("# Test study: ")
    assert (
        client.get(reverse("ratings:export_card", args=[study.slug, "raters"])).status_code == 404
    )
