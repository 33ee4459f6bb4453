"""The factions exports: each split or dissent row's factions, and who is in each (SCORING.md 8).

`factions` has one row per faction of a row labelled split, or showing dissent, in the scores
table; rows the scores table hides (below k, complementary) are hidden here too, and a faction
of fewer than k raters shows no numbers. `faction_members` gives each rater's faction in those
rows under the study's pseudonym, with the posterior probability, only where the faction has at
least k raters and the cohort is shown: a rater's faction is a fact about them.
"""

from __future__ import annotations

from typing import Any

from ratings.exports.formats import Column
from ratings.exports.privacy import rater_pseudonym
from ratings.exports.score_tables import ScoreTables
from ratings.models import FactionMember, Study

FACTION_COLUMNS = (
    Column("cohort", "text", "The cohort path."),
    Column("criterion", "text", "The criterion's key."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b."),
    Column("label", "text", "split, or consensus/contested with this dissent beside it."),
    Column("faction", "int", "1 for the larger faction, 2 for the smaller."),
    Column("suppressed", "text", "Empty if shown; below_k when the faction has under k raters."),
    Column("n_raters", "int", "Raters in the faction."),
    Column("share", "float", "The faction's share of the row's raters with an answer."),
    Column("lean", "float", "Mean over raters of each rater's mean answer (a -1, tie 0, b +1)."),
    Column("lean_low", "float", "Rater-bootstrap 2.5 percentile of the lean."),
    Column("lean_high", "float", "Rater-bootstrap 97.5 percentile of the lean."),
    Column("count_a", "int", "The faction's answers a."),
    Column("count_tie", "int", "The faction's answers tie."),
    Column("count_b", "int", "The faction's answers b."),
    Column("count_skip", "int", "The faction's skips."),
)
FACTION_MEMBER_COLUMNS = (
    Column("rater_id", "text", "The rater's pseudonym in this study (as in the vote exports)."),
    Column("cohort", "text", "The cohort path of the row."),
    Column("criterion", "text", "The criterion's key."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b."),
    Column("faction", "int", "1 for the larger faction, 2 for the smaller."),
    Column("posterior", "float", "Posterior probability of belonging to that faction."),
)


def _shown(tables: ScoreTables):
    """Yield (score row, its stored factions) of rows shown with factions."""
    for row in tables.scores:
        if row["suppressed"] or not row.get("factions_shown"):
            continue
        yield row, row["_factions"]


def faction_rows(*, tables: ScoreTables, k: int) -> list[dict[str, Any]]:
    rows = []
    for row, factions in _shown(tables):
        for faction in factions:
            out = {
                "cohort": row["cohort"],
                "criterion": row["criterion"],
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "label": row["label"],
                "faction": faction.position + 1,
                "suppressed": "",
            }
            numbers = {
                "n_raters": faction.n_raters,
                "share": faction.share,
                "lean": faction.lean,
                "lean_low": faction.lean_low,
                "lean_high": faction.lean_high,
                "count_a": faction.count_a,
                "count_tie": faction.count_tie,
                "count_b": faction.count_b,
                "count_skip": faction.count_skip,
            }
            if faction.n_raters < k:
                out["suppressed"] = "below_k"
                numbers = dict.fromkeys(numbers)
            rows.append({**out, **numbers})
    return rows


def faction_member_rows(*, study: Study, tables: ScoreTables, k: int) -> list[dict[str, Any]]:
    shown = {
        faction.pk: (row, faction)
        for row, factions in _shown(tables)
        for faction in factions
        if faction.n_raters >= k
    }
    members = (
        FactionMember.objects.filter(faction_id__in=shown)
        .order_by("faction_id", "rater_id")
        .values_list("faction_id", "rater_id", "posterior")
    )
    rows = []
    for faction_id, rater_id, posterior in members:
        row, faction = shown[faction_id]
        rows.append(
            {
                "rater_id": rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_id),
                "cohort": row["cohort"],
                "criterion": row["criterion"],
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "faction": faction.position + 1,
                "posterior": posterior,
            }
        )
    return rows
