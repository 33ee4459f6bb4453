"""Factions end to end: imported votes, `manage.py scores`, the exports and the faction panel.

Simulated cohorts whose truth is planted go in through `import_votes`, as a researcher's earlier
survey would, and come out through the `scores` command, the exports and the panel: a
consistent minority is a split with its factions, and nothing under the null is.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from ratings.exports.cards import dataset_card
from ratings.exports.tables import export_stream
from ratings.models import Faction, FactionMember, Participation, Rater, Study
from ratings.results.services import scores_compute
from ratings.results.statistics import simulate

pytestmark = pytest.mark.django_db


def _import(slug: str, lines: list[bytes]) -> Study:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "votes.csv"
        path.write_bytes(b"".join(lines))
        call_command("import_votes", str(path), "--study", slug, stdout=io.StringIO())
    study = Study.objects.get(slug=slug)
    Study.objects.filter(pk=study.pk).update(score_permutations=500, score_bootstrap=200)
    study.refresh_from_db()
    return study


def _scores_json(study: Study) -> dict[tuple[str, str], dict]:
    out = io.StringIO()
    call_command("scores", "--study", study.slug, "--format", "json", stdout=out)
    return {(row["cohort"], row["criterion"]): row for row in json.loads(out.getvalue())["scores"]}


def _consistent(rng, n_raters: int, minority: float, consistency: float = 0.85, items: int = 30):
    return simulate.faction_cohort(
        rng,
        n_raters=n_raters,
        n_items=items,
        shares=(1 - minority, minority),
        directions=(1, -1),
        consistency=consistency,
        tie_share=0.3,
    )


def test_a_consistent_third_is_a_split_with_its_factions_and_the_null_is_not(tmp_path):
    # The case: 24 raters, a third consistently prefer the other image, which the
    # old histogram rule called consensus; a 35/65 split, which it called contested.
    rng = np.random.default_rng(2024)
    third = _consistent(rng, 24, 1 / 3)
    thirty_five = _consistent(rng, 30, 0.35)
    null = simulate.null_cohort(rng, n_raters=24, n_items=30, kind="varied")
    unanimous = simulate.null_cohort(rng, n_raters=20, n_items=30, kind="unanimous")
    study = _import(
        "imported-factions",
        simulate.long_form_lines(
            {"india": third.answers, "korea": thirty_five.answers, "mexico": null.answers,
             "nigeria": unanimous.answers}
        ),
    )  # fmt: skip
    scores_compute(study=study)
    rows = _scores_json(study)

    india = rows[("india", "representation")]
    assert india["label"] == "split"
    assert india["heterogeneity_p"] < 0.01
    sizes = [faction["n_raters"] for faction in india["factions"]]
    assert abs(sizes[1] - 8) <= 1 and sum(sizes) == 24  # within one rater of the planted 8
    larger, smaller = india["factions"]
    assert larger["lean"] > 0.2 and smaller["lean"] < -0.2
    assert larger["lean_low"] <= larger["lean"] <= larger["lean_high"]
    assert set(larger["counts"]) == {"a", "b", "tie", "skip"}
    assert rows[("korea", "representation")]["label"] == "split"
    assert abs(rows[("korea", "representation")]["factions"][1]["n_raters"] - 10) <= 1

    assert rows[("mexico", "representation")]["label"] != "split"
    assert "factions" not in rows[("mexico", "representation")]
    assert rows[("nigeria", "representation")]["label"] == "consensus"
    # Every key the command printed before is still there.
    assert {"n_raters", "n_votes", "counts", "label", "ndfu", "agreement", "alpha"} <= set(india)

    # The factions exports: one row per faction of a split row, members under pseudonyms.
    factions = list(
        csv.DictReader(io.StringIO(b"".join(export_stream(
            study=study, table="factions", fmt="csv")).decode()))
    )  # fmt: skip
    india_rows = [row for row in factions if row["cohort"] == "india"]
    assert [row["faction"] for row in india_rows] == ["1", "2"]
    assert [int(row["n_raters"]) for row in india_rows] == sizes
    members = list(
        csv.DictReader(io.StringIO(b"".join(export_stream(
            study=study, table="faction_members", fmt="csv")).decode()))
    )  # fmt: skip
    india_members = [row for row in members if row["cohort"] == "india"]
    assert len(india_members) == 24
    raw_ids = {str(pk) for pk in Rater.objects.values_list("pk", flat=True)}
    assert not {row["rater_id"] for row in india_members} & raw_ids  # pseudonyms only
    assert all(0.5 <= float(row["posterior"]) <= 1 for row in india_members)
    for table in ("factions", "faction_members"):
        card = dataset_card(study=study, table=table)
        assert "## Factions" in card
        assert f"fewer than k = {study.min_cohort_size} raters" in card


def test_a_consistent_minority_below_the_share_is_dissent_beside_consensus():
    rng = np.random.default_rng(7)
    cohort = _consistent(rng, 40, 0.15, consistency=0.95, items=40)
    study = _import("imported-dissent", simulate.long_form_lines({"india": cohort.answers}))
    Study.objects.filter(pk=study.pk).update(min_cohort_size=5)
    scores_compute(study=study)
    row = _scores_json(study)[("india", "representation")]
    assert row["label"] == "consensus"
    assert row["dissent"]["n_raters"] == 6 and row["dissent"]["lean"] < -0.2
    assert [faction["n_raters"] for faction in row["factions"]] == [34, 6]


def test_a_faction_below_k_is_hidden_in_the_factions_export():
    rng = np.random.default_rng(8)
    cohort = _consistent(rng, 40, 0.1, consistency=0.95, items=40)
    study = _import("imported-small-faction", simulate.long_form_lines({"india": cohort.answers}))
    Study.objects.filter(pk=study.pk).update(min_cohort_size=5)
    scores_compute(study=study)
    rows = list(
        csv.DictReader(io.StringIO(b"".join(export_stream(
            study=study, table="factions", fmt="csv")).decode()))
    )  # fmt: skip
    smaller = next(row for row in rows if row["faction"] == "2")
    assert (smaller["suppressed"], smaller["n_raters"], smaller["lean"]) == ("below_k", "", "")
    members = b"".join(export_stream(study=study, table="faction_members", fmt="csv")).decode()
    assert all(",2," not in line for line in members.splitlines()[1:])  # none of its raters


def test_the_panel_shows_who_is_on_each_side_and_what_else_they_think(admin_client):
    # Tamil raters prefer the fine-tuned image for representation and find it the more
    # stereotypical; Kerala raters prefer the base image and find the fine-tuned one
    # stereotypical all the same. The parent India is split, its factions are the two
    # sub-cohorts, and the profile shows the faction that reads stereotypical as representative.
    rng = np.random.default_rng(11)
    tamil = simulate.faction_answers(
        rng, np.zeros(12, dtype=int), n_items=25, directions=(1,), consistency=0.9
    )
    kerala = simulate.faction_answers(
        rng, np.zeros(12, dtype=int), n_items=25, directions=(-1,), consistency=0.9
    )
    stereotype = {
        "india:tamil": simulate.faction_answers(
            rng, np.zeros(12, dtype=int), n_items=25, directions=(1,), consistency=0.9
        ),
        "india:kerala": simulate.faction_answers(
            rng, np.zeros(12, dtype=int), n_items=25, directions=(1,), consistency=0.9
        ),
    }
    study = _import(
        "imported-panel",
        simulate.long_form_lines(
            {"india:tamil": tamil, "india:kerala": kerala},
            other_criteria={"stereotype": stereotype},
        ),
    )
    Participation.objects.filter(study=study, rater__panel_id__contains="tamil").update(
        demographics={"age": "18-29"}
    )
    run = scores_compute(study=study)
    faction = Faction.objects.get(
        score__run=run, score__cohort__path="india", score__criterion__key="representation",
        position=0,
    )  # fmt: skip
    assert faction.n_raters == 12
    sides = {
        position: set(
            FactionMember.objects.filter(
                faction__score=faction.score, faction__position=position
            ).values_list("rater__panel_id", flat=True)
        )
        for position in (0, 1)
    }
    tamil_side = next(p for p, ids in sides.items() if all("tamil" in i for i in ids))
    assert all("kerala" in i for i in sides[1 - tamil_side])

    page = admin_client.get(
        reverse("ratings:factions", args=[study.slug, faction.score_id])
    ).content.decode()
    assert "Who is on each side: India" in page
    assert 'data-by="sub-cohort"' in page and "india:tamil" in page and "india:kerala" in page
    assert "fisher: p = " in page
    # The profile: both factions find b the more stereotypical; only one reads it as better.
    profile = page.split('data-criterion="stereotype"')[1].split("</tr>")[0]
    leans = [float(part.split(")")[0]) for part in profile.split("(lean ")[1:]]
    assert len(leans) == 2 and all(lean > 0.5 for lean in leans)
    # The pairs that divide them most (imported pairs have no images to show beside them).
    assert page.count('class="dividing-pair"') >= 3
    # A row with no factions has no panel.
    plain = faction.score.run.scores.exclude(factions__isnull=False).first()
    assert (
        admin_client.get(reverse("ratings:factions", args=[study.slug, plain.pk])).status_code
        == 404
    )
    # And researchers of another study cannot open it.
    outsider = Client()
    assert outsider.get(
        reverse("ratings:factions", args=[study.slug, faction.score_id])
    ).status_code in (302, 403)


def test_a_criterion_no_one_answered_hides_no_cohort_of_the_others():
    # An earlier survey asked two of the four criteria: the two without votes must not hide
    # the cohorts of the two with votes (a culture of 27 raters, one of 10 with no children).
    rng = np.random.default_rng(3)
    big = simulate.null_cohort(rng, n_raters=27, n_items=20, kind="varied")
    small = simulate.null_cohort(rng, n_raters=10, n_items=20, kind="varied")
    stereotype = {
        "india": simulate.null_cohort(rng, n_raters=27, n_items=20, kind="varied").answers,
        "korea": simulate.null_cohort(rng, n_raters=10, n_items=20, kind="varied").answers,
    }
    study = _import(
        "imported-two-criteria",
        simulate.long_form_lines(
            {"india": big.answers, "korea": small.answers},
            other_criteria={"stereotype": stereotype},
        ),
    )
    scores_compute(study=study)
    rows = list(
        csv.DictReader(io.StringIO(b"".join(export_stream(
            study=study, table="scores", fmt="csv")).decode()))
    )  # fmt: skip
    shown = {(row["cohort"], row["criterion"]) for row in rows if not row["suppressed"]}
    assert {("india", "representation"), ("india", "stereotype")} <= shown
    assert {("korea", "representation"), ("korea", "stereotype")} <= shown
    unanswered = [row for row in rows if row["criterion"] in ("alignment", "offensiveness")]
    assert unanswered and all(row["suppressed"] == "below_k" for row in unanswered)
