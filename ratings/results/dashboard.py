"""Selectors of the researchers' dashboard: stored scores shaped for the page, never recomputed.

Everything here reads the rows of the study's latest finished ScoreRun (and the assignment
coverage counters); the statistics themselves are computed by `ratings.results.services` in a
Celery task. The label of a row is derived here, at read time, from the stored statistics and
the study's thresholds and the row's stored factions (`ratings.results.statistics.labels`), so
changing a
threshold relabels old runs.

Privacy: a cohort with fewer than k raters shows no counts, and neither does a cohort whose
counts, taken from its parent's, would give a hidden cohort's away (complementary suppression,
`cohorts_hidden`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils.safestring import mark_safe

from ratings.cohorts import cohort_path_ancestors, cohort_path_parent
from ratings.models import (
    CoherenceScore,
    Cohort,
    Criterion,
    Pair,
    PairCoverage,
    Participation,
    Score,
    ScoreRun,
    StrengthScore,
    Study,
)
from ratings.results import charts
from ratings.results.dashboard_rows import (
    CoherenceRow,
    CohortSection,
    CoverageRow,
    CriterionRow,
    Crumb,
    Dashboard,
    StrengthRow,
    StudyListRow,
    VariantPanel,
)
from ratings.results.selectors import (
    STATISTIC_FIELDS,
    factions_by_score,
    score_label_of,
    scores_latest,
    study_thresholds,
)
from ratings.results.statistics.labels import Dissent, Thresholds
from ratings.texts import text_localized

COMPLEMENTARY_NOTE = "hidden so that a smaller cohort's counts cannot be derived"

# The coherence table marks a cohort polarized on what representation means (SCORING.md 6)
# when its representation answers are this far from unimodal, and each side holds the split
# share: a flag for the eye, not a label.
COHERENCE_MIN_NDFU = 0.5


def score_run_in_progress(*, study: Study, after: ScoreRun | None = None) -> ScoreRun | None:
    """Return the newest running score run started after `after` (a finished run), if any."""
    running = ScoreRun.objects.filter(study=study, status=ScoreRun.Status.RUNNING)
    if after is not None:
        running = running.filter(started_at__gte=after.started_at).exclude(pk=after.pk)
    return running.order_by("-started_at", "-pk").first()


def cohorts_hidden(n_raters: Mapping[str, int], *, k: int) -> dict[str, str]:
    """Return the cohort paths whose counts may not be shown, each with the reason.

    `n_raters` maps every cohort path of one table (one criterion and variant pair) to its
    raters. A cohort below k is hidden. Then, wherever a shown cohort has a hidden cohort below
    it, the parent's counts minus those of its nearest shown descendants would give away a
    group of raters; when that group is neither empty nor at least k raters, the smallest shown
    descendant is hidden too, until it is (complementary suppression). Rater counts may overlap
    (a rater of two subcultures), so the group's size is an estimate that errs toward hiding.
    """
    hidden = {path: "below k" for path, count in n_raters.items() if count < k}
    children: dict[str, list[str]] = defaultdict(list)
    for path in n_raters:
        parent = cohort_path_parent(path)
        if parent in n_raters:
            children[parent].append(path)

    def frontier(path: str) -> list[str]:
        shown: list[str] = []
        for child in sorted(children[path]):
            shown.extend(frontier(child) if child in hidden else [child])
        return shown

    def hides_something(path: str) -> bool:
        return any(child in hidden or hides_something(child) for child in children[path])

    changed = True
    while changed:
        changed = False
        for parent in sorted(children, key=lambda path: (path.count(":"), path)):
            if parent in hidden or not hides_something(parent):
                continue
            while True:
                shown = frontier(parent)
                rest = n_raters[parent] - sum(n_raters[path] for path in shown)
                if not shown or not 0 < rest < k:
                    break
                smallest = min(shown, key=lambda path: (n_raters[path], path))
                hidden[smallest] = "complementary"
                changed = True
    return hidden


def _share_text(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _interval_text(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"{100 * low:.0f}\u2013{100 * high:.0f}%"  # an en dash


def _number_text(value: float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def _p_text(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


class CohortNotInStudy(LookupError):
    """The drill-down asked for a cohort the study neither lists nor scored."""


def _level_paths(universe: Iterable[str], focus: str | None) -> list[str]:
    """The cohorts one page shows: top-level cultures, or a cohort and its children."""
    if focus is None:
        return sorted(path for path in universe if ":" not in path)
    children = sorted(path for path in universe if cohort_path_parent(path) == focus)
    return [focus, *children]


def cohort_names(*, paths: Iterable[str], study: Study) -> dict[str, str]:
    """Return the cohorts' names as the study's pages show them: in the reader's language, else
    the study's own, else the site's (ratings/texts.py), so a cohort named only in the study's
    language is never shown blank."""
    return {
        cohort.path: text_localized(instance=cohort, field="name", study_language=study.language)
        or cohort.path
        for cohort in Cohort.objects.filter(path__in=set(paths))
    }


def score_values(run: ScoreRun) -> list[dict]:
    """Return the run's rows as values, each with its stored factions under "factions"."""
    factions = factions_by_score(run=run)
    rows = list(
        Score.objects.filter(run=run).values(
            "id",
            "cohort__path",
            "criterion_id",
            "variant_a__name",
            "variant_b__name",
            "n_raters",
            "n_votes",
            "count_a",
            "count_tie",
            "count_b",
            "count_skip",
            *STATISTIC_FIELDS,
        )
    )
    for row in rows:
        row["factions"] = factions.get(row["id"], ())
    return rows


def _dissent_text(dissent: Dissent | None) -> str:
    if dissent is None:
        return ""
    side = "b" if dissent.lean > 0 else "a"
    return f"dissent: {dissent.n_raters} raters ({dissent.share:.0%}) consistently lean to {side}"


def hidden_by_table(
    rows: Iterable[dict], key_fields: tuple[str, ...], k: int
) -> dict[tuple, dict[str, str]]:
    """Apply `cohorts_hidden` to each table (rows sharing `key_fields`) separately."""
    tables: dict[tuple, dict[str, int]] = defaultdict(dict)
    for row in rows:
        tables[tuple(row[name] for name in key_fields)][row["cohort__path"]] = row["n_raters"]
    return {key: cohorts_hidden(counts, k=k) for key, counts in tables.items()}


def hidden_note(reason: str | None, k: int) -> str:
    if reason == "below k":
        return f"fewer than {k} raters"
    if reason == "complementary":
        return COMPLEMENTARY_NOTE
    return ""


def criterion_row(
    score: dict, criterion: Criterion, cohort_name: str, reason: str | None, t: Thresholds
) -> CriterionRow:
    question = criterion.question_for(cohort_name)
    row_label = score_label_of(values=score, factions=score["factions"], thresholds=t)
    label = row_label.label
    if reason is not None or label == "insufficient":
        # Below k, or hidden for a sibling's sake: no count, share or statistic derived from one.
        note = hidden_note(reason, t.k) if reason else "no answers but skips"
        return CriterionRow(
            key=criterion.key, question=question, label=label, shown=False, note=note
        )
    return CriterionRow(
        key=criterion.key,
        question=question,
        label=label,
        shown=True,
        n_raters=score["n_raters"],
        n_votes=score["n_votes"],
        count_a=score["count_a"],
        count_tie=score["count_tie"],
        count_b=score["count_b"],
        count_skip=score["count_skip"],
        share_b=_share_text(score["share_b"]),
        share_b_interval=_interval_text(score["share_b_low"], score["share_b_high"]),
        share_b_ties_half=_share_text(score["share_b_ties_half"]),
        share_b_ties_half_interval=_interval_text(
            score["share_b_ties_half_low"], score["share_b_ties_half_high"]
        ),
        alpha=_number_text(score["alpha"]),
        ndfu=_number_text(score["ndfu"]),
        agreement=_number_text(score["agreement"]),
        heterogeneity_p=_p_text(score["heterogeneity_p"]),
        gai=_number_text(score["gai"]),
        gai_q=_p_text(score["gai_q"]),
        dissent=_dissent_text(row_label.dissent),
        # Who is on each side: a split row, or a row with dissent, links to its factions.
        faction_score_id=score["id"]
        if score["factions"] and (label == "split" or row_label.dissent is not None)
        else None,
    )


def _panel(
    cohort_name: str, variant_a: str, variant_b: str, rows: list[CriterionRow]
) -> VariantPanel:
    title = f"{cohort_name}, {variant_a} versus {variant_b}"
    bars = [
        charts.BarRow(
            name=row.key,
            label=row.label,
            counts=(row.count_a, row.count_tie, row.count_b) if row.shown else None,
            skip=row.count_skip if row.shown else None,
            note=row.note,
        )
        for row in rows
    ]
    # charts escapes every text it writes into the markup.
    chart = mark_safe(
        charts.diverging_bars(title=title, rows=bars, left_name=variant_a, right_name=variant_b)
    )
    return VariantPanel(
        variant_a=variant_a, variant_b=variant_b, rows=tuple(rows), chart=chart, caption=title
    )


def _sections(
    *,
    level: list[str],
    focus: str | None,
    universe: set[str],
    names: Mapping[str, str],
    scores: list[dict],
    hidden: Mapping[tuple, Mapping[str, str]],
    criteria: tuple[Criterion, ...],
    strengths: list[dict],
    t: Thresholds,
) -> tuple[CohortSection, ...]:
    cells: dict[str, dict[tuple, dict]] = defaultdict(dict)
    for row in scores:
        table = (row["criterion_id"], row["variant_a__name"], row["variant_b__name"])
        cells[row["cohort__path"]][table] = row
    variant_pairs = sorted({(row["variant_a__name"], row["variant_b__name"]) for row in scores})
    parents = {cohort_path_parent(path) for path in universe}
    sections = []
    for path in level:
        name = names[path]
        own = cells.get(path, {})
        panels = []
        for va, vb in variant_pairs:
            rows = [
                criterion_row(
                    own[(criterion.pk, va, vb)],
                    criterion,
                    name,
                    hidden[(criterion.pk, va, vb)].get(path),
                    t,
                )
                for criterion in criteria
                if (criterion.pk, va, vb) in own
            ]
            if rows:
                panels.append(_panel(name, va, vb, rows))
        # A cohort hidden from any one table shows no totals either: they would give it away.
        reason = next((hidden[table][path] for table in own if path in hidden[table]), None)
        n_raters = max((row["n_raters"] for row in own.values()), default=0)
        # Every vote answers every criterion, so a variant pair's votes are its criteria's most.
        n_votes = sum(
            max((row["n_votes"] for table, row in own.items() if table[1:] == pair), default=0)
            for pair in variant_pairs
        )
        sections.append(
            CohortSection(
                path=path,
                name=name,
                depth=path.count(":") + 1,
                is_focus=path == focus,
                has_children=path in parents,
                shown=reason is None,
                note=hidden_note(reason, t.k),
                n_raters=n_raters if reason is None else 0,
                n_votes=n_votes if reason is None else 0,
                panels=tuple(panels),
                strengths=tuple(
                    StrengthRow(
                        criterion=row["criterion__key"],
                        variant=row["variant__name"],
                        strength=_number_text(row["strength"]),
                        interval=(
                            f"{_number_text(row['low'])} to {_number_text(row['high'])}"
                            if row["low"] is not None and row["high"] is not None
                            else "—"
                        ),
                    )
                    for row in strengths
                    if row["cohort__path"] == path and reason is None
                ),
            )
        )
    return tuple(sections)


def _coherence(
    *, run: ScoreRun, level: list[str], names: Mapping[str, str], t: Thresholds
) -> tuple[CoherenceRow, ...]:
    values = list(
        CoherenceScore.objects.filter(run=run).values(
            "cohort__path",
            "variant_a__name",
            "variant_b__name",
            "n_raters",
            "same",
            "tie",
            "other",
            "ndfu",
        )
    )
    hidden = hidden_by_table(values, ("variant_a__name", "variant_b__name"), t.k)
    order = {path: index for index, path in enumerate(level)}
    rows = []
    for value in sorted(
        (value for value in values if value["cohort__path"] in order),
        key=lambda v: (v["variant_a__name"], v["variant_b__name"], order[v["cohort__path"]]),
    ):
        path = value["cohort__path"]
        va, vb = value["variant_a__name"], value["variant_b__name"]
        reason = hidden[(va, vb)].get(path)
        common = {
            "cohort_path": path,
            "cohort_name": names[path],
            "variant_a": va,
            "variant_b": vb,
        }
        if reason is not None:
            rows.append(CoherenceRow(**common, shown=False, note=hidden_note(reason, t.k)))
            continue
        same, tie, other = value["same"], value["tie"], value["other"]
        total = same + tie + other
        polarized = (
            value["ndfu"] is not None
            and total > 0
            and value["ndfu"] >= COHERENCE_MIN_NDFU
            and min(same, other) / total >= t.split_min_share
        )
        chart = mark_safe(  # charts escapes every text it writes
            charts.stacked_bar(
                title=f"{names[path]}, representation answers",
                parts=(
                    ("the same image better", same, charts.COLOUR_A),
                    ("both equally", tie, charts.COLOUR_TIE),
                    ("the other image better", other, charts.COLOUR_B),
                ),
            )
        )
        rows.append(
            CoherenceRow(
                **common,
                shown=True,
                n_raters=value["n_raters"],
                same=same,
                tie=tie,
                other=other,
                ndfu=_number_text(value["ndfu"]),
                polarized=polarized,
                chart=chart,
            )
        )
    return tuple(rows)


def _coverage(
    *,
    study: Study,
    level: list[str],
    names: Mapping[str, str],
    sections: tuple[CohortSection, ...],
) -> tuple[CoverageRow, ...]:
    target = study.raters_per_pair
    pairs = {
        row["cohort__path"]: row
        for row in PairCoverage.objects.filter(study=study, cohort__path__in=level)
        .values("cohort__path")
        .annotate(
            pairs=Count("pk"),
            rated=Count("pk", filter=Q(votes__gt=0)),
            at_target=Count("pk", filter=Q(votes__gte=target)),
        )
    }
    by_path = {section.path: section for section in sections}
    rows = []
    for path in level:
        section = by_path[path]
        counts = pairs.get(path, {"pairs": 0, "rated": 0, "at_target": 0})
        rows.append(
            CoverageRow(
                path=path,
                name=names[path],
                shown=section.shown,
                note=section.note,
                n_raters=section.n_raters,
                n_votes=section.n_votes,
                pairs=counts["pairs"],
                pairs_rated=counts["rated"] if section.shown else 0,
                pairs_at_target=counts["at_target"] if section.shown else 0,
            )
        )
    return tuple(rows)


def dashboard_for_study(*, study: Study, cohort_path: str | None = None) -> Dashboard:
    """Shape the latest finished scores of `study` for the dashboard, at one level of cohorts.

    With no `cohort_path`, the top-level cultures; with one, that cohort and its children.
    Raises CohortNotInStudy for a cohort the study neither lists nor has scores for.
    """
    thresholds = study_thresholds(study=study)
    run = scores_latest(study=study)
    running = score_run_in_progress(study=study, after=run)
    criteria = tuple(study.criteria.order_by("position", "pk"))
    scores = score_values(run) if run else []

    study_paths = set(study.cohorts.values_list("path", flat=True))
    universe = {
        ancestor
        for path in study_paths | {row["cohort__path"] for row in scores}
        for ancestor in cohort_path_ancestors(path)
    }
    if cohort_path is not None and cohort_path not in universe:
        raise CohortNotInStudy(cohort_path)
    names = cohort_names(paths=universe, study=study)
    level = _level_paths(universe, cohort_path)
    crumbs = tuple(
        Crumb(path=path, name=names[path])
        for path in (cohort_path_ancestors(cohort_path) if cohort_path else [])
    )

    hidden = hidden_by_table(
        scores, ("criterion_id", "variant_a__name", "variant_b__name"), thresholds.k
    )
    strengths = (
        list(
            StrengthScore.objects.filter(run=run, cohort__path__in=level)
            .order_by("cohort__path", "criterion__position", "-strength")
            .values("cohort__path", "criterion__key", "variant__name", "strength", "low", "high")
        )
        if run
        else []
    )
    sections = _sections(
        level=level,
        focus=cohort_path,
        universe=universe,
        names=names,
        scores=scores,
        hidden=hidden,
        criteria=criteria,
        strengths=strengths,
        t=thresholds,
    )
    return Dashboard(
        study=study,
        thresholds=thresholds,
        run=run,
        running=running,
        focus=crumbs[-1] if crumbs else None,
        crumbs=crumbs,
        sections=sections,
        coherence=_coherence(run=run, level=level, names=names, t=thresholds) if run else (),
        coverage=_coverage(study=study, level=level, names=names, sections=sections),
        pairs_total=Pair.objects.filter(study=study, is_attention_check=False).count(),
        raters_consented=Participation.objects.filter(
            study=study, consented_at__isnull=False
        ).count(),
        criteria=criteria,
    )


def studies_with_latest_run(*, studies: QuerySet[Study]) -> list[StudyListRow]:
    """Pair each study with its newest finished score run, in two queries however many runs;
    sorted by name."""
    latest = ScoreRun.objects.filter(study=OuterRef("pk"), status=ScoreRun.Status.DONE).order_by(
        "-computed_at", "-pk"
    )
    rows = list(studies.annotate(latest_run_id=Subquery(latest.values("pk")[:1])))
    # By the name the reader sees (their language's, else the study's own): a study written in
    # another language than the site's sorts by its name, not by an empty column.
    rows.sort(key=lambda study: (study.name.casefold(), study.slug))
    runs = ScoreRun.objects.in_bulk([study.latest_run_id for study in rows if study.latest_run_id])
    return [StudyListRow(study=study, run=runs.get(study.latest_run_id)) for study in rows]
