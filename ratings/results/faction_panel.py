"""The faction panel of a split or dissent row: who is on each side and what divides them.

Read from a stored score row and its factions (SCORING.md section 8): the factions' sizes and
leans, their make-up by sub-cohort and by each demographic answer (cells below k hidden), the
pairs that divide them most with both images (researchers see which variant is which), and
each faction's answers to the other criteria on the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.safestring import mark_safe

from ratings.models import Faction, FactionMember, Pair, Participation, Rater, Score
from ratings.results import charts
from ratings.results.selectors import score_label_of, study_thresholds

# Pairs shown per panel, of the dividing pairs stored with the row.
DIVIDING_SHOWN = 6
NO_ANSWER = "no answer"


class ScoreWithoutFactions(Exception):
    """The score row has no factions to show (none were fitted there)."""


@dataclass(frozen=True)
class _Side:
    """A faction as composition reads it: rows into the label list, and their number."""

    raters: Any
    n_raters: int


@dataclass(frozen=True)
class _Sides:
    factions: tuple[_Side, ...]

    @property
    def n_factions(self) -> int:
        return len(self.factions)


@dataclass(frozen=True)
class CompositionTable:
    title: str
    labels: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (faction name, cells as text)
    test: str


@dataclass(frozen=True)
class DividingPair:
    prompt: str
    variant_a: str
    variant_b: str
    image_a: str
    image_b: str
    means: tuple[str, str]


@dataclass(frozen=True)
class ProfileRow:
    criterion: str
    cells: tuple[str, ...]  # per faction: "a 3 · tie 1 · b 9 (lean +0.46)"


@dataclass(frozen=True)
class FactionPanel:
    score: Score
    label: str
    dissent: str
    names: tuple[str, ...]
    factions: tuple[Faction, ...]
    chart: str
    composition: tuple[CompositionTable, ...]
    dividing: tuple[DividingPair, ...]
    profile: tuple[ProfileRow, ...]


def _lean_text(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _faction_names(factions: tuple[Faction, ...], variant_a: str, variant_b: str) -> tuple:
    names = []
    for faction in factions:
        side = variant_b if (faction.lean or 0) > 0 else variant_a
        names.append(f"Faction {faction.position + 1} (leans to {side})")
    return tuple(names)


def _composition_tables(
    *, score: Score, factions: tuple[Faction, ...], names: tuple[str, ...], k: int
) -> tuple[CompositionTable, ...]:
    """Return the make-up of the factions by sub-cohort and by each demographic answer."""
    import numpy as np

    from ratings.results.statistics.composition import faction_composition
    from ratings.results.statistics.resampling import rng_for

    members = list(
        FactionMember.objects.filter(faction__in=factions)
        .values_list("faction__position", "rater_id")
        .order_by("faction__position", "rater_id")
    )
    rater_ids = [rater for _, rater in members]
    sides = _Sides(
        tuple(
            _Side(
                raters=np.array([i for i, (p, _) in enumerate(members) if p == position]),
                n_raters=sum(1 for p, _ in members if p == position),
            )
            for position in range(len(factions))
        )
    )
    cohort = score.cohort.path
    # A rater's sub-cohort: the most specific of their cohorts below this one, if any.
    paths: dict[int, str] = {}
    for rater_id, path in Rater.cohorts.through.objects.filter(
        rater_id__in=rater_ids, cohort__path__startswith=f"{cohort}:"
    ).values_list("rater_id", "cohort__path"):
        if path.count(":") > paths.get(rater_id, "").count(":"):
            paths[rater_id] = path
    label_sets = {"sub-cohort": [paths.get(rater, f"{cohort} only") for rater in rater_ids]}
    demographics = dict(
        Participation.objects.filter(study=score.run.study, rater_id__in=rater_ids).values_list(
            "rater_id", "demographics"
        )
    )
    keys = sorted({key for answers in demographics.values() for key in (answers or {})})
    for key in keys:
        label_sets[key] = [
            str((demographics.get(rater) or {}).get(key) or NO_ANSWER) for rater in rater_ids
        ]
    tables = []
    for title, labels in label_sets.items():
        if len(set(labels)) < 2:
            continue
        table = faction_composition(
            sides, labels, k=k, rng=rng_for(score.run.seed, score.pk), permutations=2000
        )
        test = f"{table.test}: p = {table.p:.3g}" if table.p is not None else "no test possible"
        tables.append(
            CompositionTable(
                title=title,
                labels=table.labels,
                rows=tuple(
                    (
                        names[index],
                        tuple("hidden" if cell is None else str(cell) for cell in counts),
                    )
                    for index, counts in enumerate(table.counts)
                ),
                test=test,
            )
        )
    return tuple(tables)


def _dividing(score: Score) -> tuple[DividingPair, ...]:
    stored = score.dividing_pairs[:DIVIDING_SHOWN]
    pairs = Pair.objects.select_related(
        "prompt", "variant_a", "variant_b", "image_a", "image_b"
    ).in_bulk([item["pair"] for item in stored])
    shown = []
    for item in stored:
        pair = pairs.get(item["pair"])
        if pair is None:
            continue
        shown.append(
            DividingPair(
                prompt=pair.prompt.text,
                variant_a=pair.variant_a.name,
                variant_b=pair.variant_b.name,
                image_a=_image_url(pair.image_a),
                image_b=_image_url(pair.image_b),
                means=(_lean_text(item["mean_first"]), _lean_text(item["mean_second"])),
            )
        )
    return tuple(shown)


def _image_url(image) -> str:
    if image is None:
        return ""
    file = image.preview or image.file
    return file.url if file else ""


def faction_panel(*, score: Score) -> FactionPanel:
    """Return the panel of a score row; ScoreWithoutFactions where none were stored."""
    factions = tuple(score.factions.order_by("position"))
    if len(factions) != 2:
        raise ScoreWithoutFactions(score.pk)
    thresholds = study_thresholds(study=score.run.study)
    label = score_label_of(values=vars(score), factions=factions, thresholds=thresholds)
    names = _faction_names(factions, score.variant_a.name, score.variant_b.name)
    chart = mark_safe(  # charts escapes every text it writes
        charts.faction_leans(
            title=f"{score.cohort.name}, {score.criterion.key}: the factions' leans",
            factions=[
                (name, f.n_raters, f.lean, f.lean_low, f.lean_high)
                for name, f in zip(names, factions, strict=True)
            ],
            left_name=score.variant_a.name,
            right_name=score.variant_b.name,
        )
    )
    criteria = sorted(
        {key for faction in factions for key in faction.profile},
        key=lambda key: key,
    )
    profile = tuple(
        ProfileRow(
            criterion=key,
            cells=tuple(
                (
                    "a {a} · tie {tie} · b {b} (lean {lean})".format(
                        a=faction.profile[key]["a"],
                        tie=faction.profile[key]["tie"],
                        b=faction.profile[key]["b"],
                        lean=_lean_text(faction.profile[key]["lean"]),
                    )
                    if key in faction.profile
                    else "—"
                )
                for faction in factions
            ),
        )
        for key in criteria
    )
    dissent = ""
    if label.dissent is not None:
        dissent = f"{label.dissent.n_raters} raters ({label.dissent.share:.0%})"
    return FactionPanel(
        score=score,
        label=label.label,
        dissent=dissent,
        names=names,
        factions=factions,
        chart=chart,
        composition=_composition_tables(
            score=score, factions=factions, names=names, k=thresholds.k
        ),
        dividing=_dividing(score),
        profile=profile,
    )
