"""Compute a study's split-aware scores and store them as one ScoreRun, all or nothing.

The statistics are pure code in `ratings.results.statistics`; this module is the Django side.
Every cohort at every level of the hierarchy, criterion and variant pair is scored, and the
ScoreRun with its Score, CoherenceScore and StrengthScore rows is stored in one transaction.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from ratings.models import (
    CoherenceScore,
    Faction,
    FactionMember,
    Score,
    ScoreRun,
    StrengthScore,
    Study,
)
from ratings.results.loading import Catalog, study_votes, votes_load
from ratings.results.selectors import STATISTIC_FIELDS, scores_latest

if TYPE_CHECKING:
    import numpy as np

    from ratings.results.statistics.study import CellFactions, StudyScores

logger = logging.getLogger(__name__)

# The criteria that cross-criterion coherence reads (SCORING.md section 6), by key.
COHERENCE_KEYS = ("stereotype", "offensiveness", "representation")


def scores_compute(*, study: Study, include_flagged: bool = False, seed: int = 0) -> ScoreRun:
    """Compute and store every score of a study; return its ScoreRun (status done).

    The run is created first (status running, with its start time) and its rows are stored
    with it marked done in one transaction, so readers see all of a run or none of it. On an
    error the run is marked failed, with the error, and the error is raised again.
    """
    from ratings.results.statistics.study import study_scores

    run = ScoreRun.objects.create(
        study=study,
        include_flagged=include_flagged,
        permutations=study.score_permutations,
        bootstrap=study.score_bootstrap,
        seed=seed,
    )
    started = time.monotonic()
    try:
        criteria = list(study.criteria.all())
        loaded = votes_load(study=study, criteria=criteria, include_flagged=include_flagged)
        loaded_at = time.monotonic()
        votes, catalog = study_votes(study=study, loaded=loaded, criteria=criteria)
        keys = [criterion.key for criterion in criteria]
        coherence_criteria = (
            tuple(keys.index(key) for key in COHERENCE_KEYS)
            if all(key in keys for key in COHERENCE_KEYS)
            else None
        )
        result = study_scores(
            votes,
            permutations=run.permutations,
            bootstrap=run.bootstrap,
            seed=seed,
            coherence_criteria=coherence_criteria,
            gai_min_raters=study.min_cohort_size,
            factions_max_p=study.split_max_p,
            factions_min_raters=study.min_cohort_size,
        )
        computed_at = time.monotonic()
        with transaction.atomic():
            _rows_store(run=run, result=result, catalog=catalog)
            run.status = ScoreRun.Status.DONE
            run.computed_at = timezone.now()
            run.votes_covered = len(loaded.vote_ids)
            run.last_vote_id = int(loaded.vote_ids[-1]) if len(loaded.vote_ids) else None
            run.save(update_fields=["status", "computed_at", "votes_covered", "last_vote_id"])
    except Exception as exc:
        ScoreRun.objects.filter(pk=run.pk).update(
            status=ScoreRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    logger.info(
        "Scored study %s: %d votes, %d cells; load %.1fs, statistics %.1fs, store %.1fs",
        study.slug,
        run.votes_covered,
        len(result.cells),
        loaded_at - started,
        computed_at - loaded_at,
        time.monotonic() - computed_at,
    )
    return run


def _rows_store(*, run: ScoreRun, result: StudyScores, catalog: Catalog) -> None:
    scores = {}
    for key, cell in result.cells.items():
        cohort, criterion, pair = key
        variant_a, variant_b = catalog.variant_pairs[pair]
        fitted = result.factions.get(key)
        scores[key] = Score(
            run=run,
            cohort=catalog.cohorts[cohort],
            criterion=catalog.criteria[criterion],
            variant_a_id=variant_a,
            variant_b_id=variant_b,
            n_raters=cell.n_raters,
            n_votes=cell.n_votes,
            count_a=cell.count_a,
            count_tie=cell.count_tie,
            count_b=cell.count_b,
            count_skip=cell.count_skip,
            **{name: getattr(cell, name) for name in STATISTIC_FIELDS},
            dividing_pairs=_dividing_pairs(fitted, catalog.pair_ids) if fitted else [],
        )
    Score.objects.bulk_create(scores.values(), batch_size=1000)
    _factions_store(result=result, scores=scores, catalog=catalog)
    coherence = []
    for (cohort, pair), cell in result.coherence.items():
        variant_a, variant_b = catalog.variant_pairs[pair]
        coherence.append(
            CoherenceScore(
                run=run,
                cohort=catalog.cohorts[cohort],
                variant_a_id=variant_a,
                variant_b_id=variant_b,
                n_raters=cell.n_raters,
                same=cell.same,
                tie=cell.tie,
                other=cell.other,
                ndfu=cell.ndfu,
            )
        )
    CoherenceScore.objects.bulk_create(coherence, batch_size=1000)
    strengths = [
        StrengthScore(
            run=run,
            cohort=catalog.cohorts[cohort],
            criterion=catalog.criteria[criterion],
            variant_id=catalog.variant_ids[strength.variant],
            strength=strength.strength,
            low=strength.low,
            high=strength.high,
        )
        for (cohort, criterion), cells in result.strengths.items()
        for strength in cells
    ]
    StrengthScore.objects.bulk_create(strengths, batch_size=1000)


def _dividing_pairs(fitted: CellFactions, pair_ids: np.ndarray) -> list[dict]:
    return [
        {
            "pair": int(pair_ids[fitted.items[item.item]]),
            "mean_first": item.mean_first,
            "mean_second": item.mean_second,
            "n_first": item.n_first,
            "n_second": item.n_second,
        }
        for item in fitted.dividing
    ]


def _factions_store(
    *,
    result: StudyScores,
    scores: dict[tuple[int, int, int], Score],
    catalog: Catalog,
) -> None:
    """Store the two factions of every cell where they were fitted, and who is in each."""
    factions, members = [], []
    for key, fitted in result.factions.items():
        profiles: dict[int, dict] = {0: {}, 1: {}}
        for profile in fitted.profiles:
            profiles[profile.faction][catalog.criteria[int(profile.criterion)].key] = {
                "n_raters": profile.n_raters,
                "a": profile.count_a,
                "tie": profile.count_tie,
                "b": profile.count_b,
                "lean": profile.lean,
            }
        for position, side in enumerate(fitted.fit.factions):
            low, high = side.lean_interval or (None, None)
            faction = Faction(
                score=scores[key],
                position=position,
                n_raters=side.n_raters,
                share=side.share,
                lean=side.lean,
                lean_low=low,
                lean_high=high,
                count_a=side.count_a,
                count_tie=side.count_tie,
                count_b=side.count_b,
                count_skip=side.count_skip or 0,
                profile=profiles[position],
            )
            factions.append(faction)
            for row in side.raters:
                members.append(
                    FactionMember(
                        faction=faction,
                        rater_id=int(catalog.rater_ids[fitted.raters[row]]),
                        posterior=float(min(1.0, max(0.0, fitted.fit.posterior[row]))),
                    )
                )
    Faction.objects.bulk_create(factions, batch_size=1000)
    FactionMember.objects.bulk_create(members, batch_size=5000)


def scores_refresh(*, study: Study, requested_at: datetime | None = None) -> ScoreRun | None:
    """Recompute a study's scores, unless a run started after `requested_at` already covers it.

    A run that started after the request read every vote committed before it, so the request
    is already answered; returns None then.
    """
    if requested_at is not None:
        latest = scores_latest(study=study, include_flagged=False)
        if latest is not None and latest.started_at >= requested_at:
            return None
    return scores_compute(study=study)
