"""Dataset cards: the Markdown that travels with every export.

A table of votes or scores is only as useful as what a reader knows about it: which study,
which questions in which words, which votes, what k was and what it hid, and what each column
means. The card says all of that, from the same sources the export reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from ratings.exports.privacy import SUPPRESSED_BELOW_K
from ratings.exports.score_tables import ScoreTables, score_tables
from ratings.exports.tables import TABLE_TITLES, export_check, export_columns
from ratings.exports.votes import VoteRelease, votes_release
from ratings.models import Answer, Participation, Study, Vote
from ratings.results.selectors import study_thresholds


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "none"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: object) -> str:
    """Text made safe for one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _study_section(study: Study) -> list[str]:
    lines = ["## Study", "", f"- Name: {study.name} (`{study.slug}`)"]
    if study.description:
        lines.append(f"- Description: {' '.join(study.description.split())}")
    cohorts = list(study.cohorts.order_by("path").values_list("path", flat=True))
    if cohorts:
        lines.append(f"- Cohorts of the study: {', '.join(f'`{path}`' for path in cohorts)}")
    lines.append(
        f"- k = {study.min_cohort_size}: the fewest raters a cohort needs before anything "
        "about it is shown."
    )
    lines += ["", "### Criteria, in the study's words", "", "| key | question |", "| --- | --- |"]
    for key, question in study.criteria.order_by("position", "id").values_list("key", "question"):
        lines.append(f"| `{key}` | {_cell(question)} |")
    lines.append("")
    lines.append(
        "`{culture}` in a question is replaced by the rater's own culture on the rating page. "
        "Answers are stored in variant terms: `a` or `b` names the variant the rater gave as "
        "the answer to the question (for stereotype, `a` means variant a's image is the more "
        "stereotypical), never a screen side."
    )
    return lines


def _votes_sections(study: Study, table: str, release: VoteRelease) -> list[str]:
    votes = Vote.objects.filter(study=study)
    counts = votes.aggregate(
        total=Count("pk"),
        checks=Count("pk", filter=~Q(kind="pair") | Q(pair__is_attention_check=True)),
        imported=Count("pk", filter=Q(source="import")),
        raters=Count("rater", distinct=True),
        pairs=Count("pair", distinct=True),
        first=Min("created_at"),
        last=Max("created_at"),
    )
    answers = Answer.objects.filter(vote__study=study).count()
    flagged = (
        Participation.objects.filter(study=study, flagged=True, rater__votes__study=study)
        .distinct()
        .count()
    )
    rows = answers if table == "votes_long" else counts["total"]
    lines = [
        "## Contents",
        "",
        f"- Rows: {rows}",
        f"- Votes: {counts['total']}; raters: {counts['raters']}; pairs: {counts['pairs']}",
        f"- Answers (one per vote and criterion answered): {answers}",
        f"- Votes cast from {_when(counts['first'])} to {_when(counts['last'])}",
        f"- Attention-check votes (kept, marked in `attention_check`, never scored): "
        f"{counts['checks']}",
        f"- Raters flagged by the quality checks (their votes kept, marked in "
        f"`rater_flagged`, left out of scores): {flagged}",
        f"- Votes imported from earlier surveys (`source` = import): {counts['imported']}",
        "",
        "## Privacy",
        "",
        "- `rater_id` is a pseudonym: an HMAC-SHA256 of the rater under this study's secret "
        "salt, so it is stable within the study, differs between studies, and cannot be turned "
        "back into a user id, username, email or panel id, none of which is exported.",
        f"- `cohort` shows only labels held by at least k = {study.min_cohort_size} raters "
        "among the raters in this export. A smaller label is rolled up into its parent; a "
        "culture still too small is left out. While the raters left with no label at all "
        "would be fewer than k (and so recognisable as the missing cultures), the smallest "
        "remaining label is left out too.",
    ]
    rolled = release.rolled_up
    if rolled:
        lines.append("- Rolled up into a parent:")
        lines += [f"  - `{label}` shown as `{shown}`" for label, shown in sorted(rolled.items())]
    if release.dropped:
        lines.append(
            "- Left out (the raters keep their other labels, or an empty `cohort`): "
            + ", ".join(f"`{label}`" for label in release.dropped)
        )
    if not rolled and not release.dropped:
        lines.append("- Every cohort label met k; none was rolled up or left out.")
    return lines


def _covered_range(study: Study, tables: ScoreTables) -> tuple[datetime | None, datetime | None]:
    run = tables.run
    if run is None or run.last_vote_id is None:
        return None, None
    covered = Vote.objects.filter(study=study, pk__lte=run.last_vote_id).aggregate(
        first=Min("created_at"), last=Max("created_at")
    )
    return covered["first"], covered["last"]


def _scores_sections(study: Study, table: str, tables: ScoreTables) -> list[str]:
    run = tables.run
    lines = ["## Contents", ""]
    if run is None:
        return [*lines, "No scores have been computed for this study yet; the table is empty."]
    first, last = _covered_range(study, tables)
    rows = tables.scores if table == "scores" else tables.scores + tables.coherence
    suppressed = [row for row in rows if row["suppressed"]]
    thresholds = study_thresholds(study=study)
    lines += [
        f"- Score run {run.pk}, computed at {_when(run.computed_at)}",
        f"- Votes covered: {run.votes_covered} (every scored vote of the study up to vote id "
        f"{run.last_vote_id}), cast from {_when(first)} to {_when(last)}",
        "- Attention-check votes are never scored; flagged raters' votes are "
        + ("included." if run.include_flagged else "left out."),
        f"- Resampling: {run.permutations} permutations, {run.bootstrap} rater-cluster "
        f"bootstrap resamples, seed {run.seed} (a rerun gives the same numbers)",
        f"- Rows: {len(rows)}, of which suppressed: {len(suppressed)}",
        "",
        "### Labels",
        "",
        f"- `insufficient`: fewer than k = {thresholds.k} raters; no numbers are shown.",
        f"- `split`: rater heterogeneity p < {thresholds.split_max_p}; two factions of "
        "raters fit better than one (latent classes, BIC); they lean opposite ways (each "
        f"lean at least {thresholds.split_min_lean} from 0); and the smaller holds at least "
        f"{thresholds.split_min_share:.0%} of the raters and at least k of them. A smaller "
        "consistent faction is dissent, shown beside the label. nDFU and van der Eijk's A are "
        "reported, never deciding.",
        "- `contested`: not split, and no answer holds "
        f"{thresholds.contested_max_top_share:.0%} of a/tie/b.",
        "- `consensus`: otherwise. Alpha is reported but never decides a label.",
        "",
        "## Privacy",
        "",
        f"- A cohort row with fewer than k = {study.min_cohort_size} raters is suppressed "
        "(`suppressed` = below_k): its counts, shares and statistics are empty. Its raters "
        "still count in every parent row.",
        "- Complementary suppression (`suppressed` = complementary): where a shown parent minus "
        "its shown children would leave a group of 1 to k - 1 raters (a hidden child, or the "
        "parent's own raters), the smallest shown child is suppressed too; the same holds for "
        "the top-level cultures against the study as a whole. One set of suppressed cohorts "
        "applies to every criterion of a variant pair.",
        "- No rater ids appear in this table.",
    ]
    listed = tables.suppressed()
    if table == "scores":
        listed = [entry for entry in listed if entry[0] == "scores"]
    if listed:
        lines += ["", "### Suppressed cohorts", "", "| table | cohort | variants | why |"]
        lines.append("| --- | --- | --- | --- |")
        for kind, cohort, variant_a, variant_b, reason in listed:
            why = "fewer than k raters" if reason == SUPPRESSED_BELOW_K else "complementary"
            lines.append(f"| {kind} | `{cohort}` | {variant_a} vs {variant_b} | {why} |")
    return lines


def dataset_card(*, study: Study, table: str) -> str:
    """Return the Markdown dataset card of one export table of a study."""
    export_check(table=table, fmt="csv")
    lines = [
        f"# {study.name}: {TABLE_TITLES[table]}",
        "",
        f"Dataset card of the `{table}` export of study `{study.slug}`, written "
        f"{_when(timezone.now())} by Polyphony. The same rows are offered as CSV, JSONL and "
        "Parquet.",
        "",
        *_study_section(study),
        "",
    ]
    if table in ("votes_long", "votes_wide"):
        lines += _votes_sections(study, table, votes_release(study=study))
    else:
        lines += _scores_sections(study, table, score_tables(study=study))
    if table in ("factions", "faction_members"):
        lines += [
            "",
            "## Factions",
            "",
            "- Rows come from the score rows labelled split, or showing dissent, that the "
            "scores table shows; rows it hides are left out here too.",
            f"- A faction of fewer than k = {study.min_cohort_size} raters shows no numbers in "
            "`factions`, and none of its raters appear in `faction_members`.",
            "- Raters appear only under the study's pseudonyms (as in the vote exports); a "
            "faction is fitted by a latent class model over raters, and `posterior` is the "
            "probability of the faction given the rater's answers.",
        ]
    lines += [
        "",
        "## Formula cells",
        "",
        "In the CSV file, a text value that begins with `=`, `+`, `-`, `@`, a tab or a carriage "
        "return is written with a leading apostrophe (`'`), as OWASP advises against CSV "
        "injection, so a spreadsheet shows it as text instead of running it. Remove that one "
        "apostrophe to get the value as stored; JSON Lines and Parquet carry values unchanged.",
    ]
    lines += ["", "## Columns", "", "| column | type | meaning |", "| --- | --- | --- |"]
    for column in export_columns(study=study, table=table):
        lines.append(f"| `{column.name}` | {column.kind} | {_cell(column.meaning)} |")
    return "\n".join(lines) + "\n"
