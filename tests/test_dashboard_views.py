"""The researchers' dashboard: stored scores per cohort with labels, drill-down, coherence,
coverage, recompute, export links, and nothing at all for anyone not granted the study."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone

import ratings.urls
from generation.models import ModelVariant, Prompt, PromptBatch
from ratings.access import study_grant
from ratings.models import (
    CoherenceScore,
    Cohort,
    Faction,
    Pair,
    PairCoverage,
    Score,
    ScoreRun,
    StrengthScore,
    Study,
)
from ratings.studies import cohort_ensure, study_create
from webapp import urls as webapp_urls

pytestmark = pytest.mark.django_db

DASH = "\u2013"  # an en dash, as the page writes ranges and names
COMPUTED_AT = datetime(2025, 3, 14, 9, 26, tzinfo=UTC)

# (n_raters, a, tie, b, skip, ndfu, agreement, heterogeneity_p) per cohort and criterion.
STATS = {
    "india": {
        "alignment": (14, 10, 8, 150, 2, 0.0, 0.85, 0.6),  # consensus: 89% b
        "representation": (14, 60, 10, 62, 4, 0.83, -0.42, 0.001),  # split
        "stereotype": (14, 40, 45, 35, 0, 0.1, 0.1, 0.3),  # contested: top 37.5%
        "offensiveness": (14, 100, 10, 10, 0, 0.0, 0.8, 0.5),  # consensus: 83% a
    },
    "india:tamil": {
        "alignment": (8, 4, 4, 72, 0, 0.0, 0.9, 0.7),
        "representation": (8, 70, 4, 6, 1, 0.0, 0.8, 0.2),
        "stereotype": (8, 30, 20, 30, 0, 0.2, 0.0, 0.4),
        "offensiveness": (8, 66, 7, 7, 0, 0.0, 0.8, 0.6),
    },
    "india:kerala": {  # fewer than k = 5 raters: insufficient everywhere
        key: (3, 11, 2, 17, 1, 0.2, 0.1, 0.5)
        for key in ("alignment", "representation", "stereotype", "offensiveness")
    },
    "korea": {
        key: (6, 5, 3, 52, 0, 0.0, 0.9, 0.5)
        for key in ("alignment", "representation", "stereotype", "offensiveness")
    },
    "nigeria": {
        key: (2, 7, 1, 13, 0, 0.0, 0.5, 0.5)
        for key in ("alignment", "representation", "stereotype", "offensiveness")
    },
}


def _score(run, cohort, criterion, variants, stats) -> Score:
    n_raters, a, tie, b, skip, ndfu, agreement, p = stats
    return Score(
        run=run,
        cohort=cohort,
        criterion=criterion,
        variant_a=variants[0],
        variant_b=variants[1],
        n_raters=n_raters,
        n_votes=a + tie + b + skip,
        count_a=a,
        count_tie=tie,
        count_b=b,
        count_skip=skip,
        share_b=b / (a + b),
        share_b_low=b / (a + b) - 0.07,
        share_b_high=b / (a + b) + 0.06,
        share_b_ties_half=(b + tie / 2) / (a + tie + b),
        alpha=0.31,
        ndfu=ndfu,
        agreement=agreement,
        heterogeneity_p=p,
        gai=1.37 if cohort.path == "india" else None,
        gai_q=0.004 if cohort.path == "india" else None,
    )


def _run(study: Study, **fields) -> ScoreRun:
    defaults = {
        "status": ScoreRun.Status.DONE,
        "started_at": COMPUTED_AT - timedelta(minutes=1),
        "computed_at": COMPUTED_AT,
        "votes_covered": 412,
        "last_vote_id": 9031,
        "permutations": 1000,
        "bootstrap": 1000,
    }
    return ScoreRun.objects.create(study=study, **{**defaults, **fields})


@pytest.fixture
def score_variants(db) -> list[ModelVariant]:
    return [
        ModelVariant.objects.create(name="sd-base", role="imported"),
        ModelVariant.objects.create(name="sd-culture-lora", role="imported"),
    ]


@pytest.fixture
def scored(study, score_variants) -> ScoreRun:
    """A finished run with scores at two levels, coherence rows and Bradley-Terry strengths."""
    run = _run(study)
    criteria = {criterion.key: criterion for criterion in study.criteria.all()}
    Score.objects.bulk_create(
        _score(run, Cohort.objects.get(path=path), criteria[key], score_variants, stats)
        for path, by_criterion in STATS.items()
        for key, stats in by_criterion.items()
    )
    # India's representation row was found split: its two opposed factions, as stored.
    split_row = Score.objects.get(run=run, cohort__path="india", criterion__key="representation")
    for position, (size, lean, a, b) in enumerate(((8, -0.6, 52, 10), (6, 0.7, 8, 52))):
        Faction.objects.create(
            score=split_row,
            position=position,
            n_raters=size,
            share=size / 14,
            lean=lean,
            count_a=a,
            count_tie=5,
            count_b=b,
            count_skip=2,
        )
    for cohort_path, n_raters, same, tie, other, ndfu in (
        ("india", 14, 20, 2, 19, 0.9),
        ("korea", 6, 1, 0, 12, 0.0),
        ("nigeria", 2, 3, 0, 1, 0.0),
        ("india:tamil", 8, 2, 1, 15, 0.0),
    ):
        CoherenceScore.objects.create(
            run=run,
            cohort=Cohort.objects.get(path=cohort_path),
            variant_a=score_variants[0],
            variant_b=score_variants[1],
            n_raters=n_raters,
            same=same,
            tie=tie,
            other=other,
            ndfu=ndfu,
        )
    for variant, strength in zip(score_variants, (-0.41, 0.41), strict=True):
        StrengthScore.objects.create(
            run=run,
            cohort=Cohort.objects.get(path="korea"),
            criterion=criteria["alignment"],
            variant=variant,
            strength=strength,
            low=strength - 0.2,
            high=strength + 0.2,
        )
    return run


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _text(markup: str) -> str:
    """The words a reader sees in tables, charts left out (they have tests of their own)."""
    markup = re.sub(r"<svg.*?</svg>", " ", markup, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup)).strip())


def _line(markup: str) -> str:
    """The words of one line, as read: no space before a comma or full stop."""
    return re.sub(r"\s+([.,])", r"\1", _text(markup))


def _section(page: str, cohort_path: str) -> str:
    match = re.search(
        rf'<section class="cohort[^"]*"[^>]*data-cohort="{re.escape(cohort_path)}">(.*?)</section>',
        page,
        re.S,
    )
    assert match, f"no section for {cohort_path}"
    return match.group(1)


def _rows(html: str) -> dict[str, tuple[str, list[str]]]:
    """Criterion rows of a scores table: key -> (label, the texts of its cells after the badge)."""
    rows = {}
    for key, label, body in re.findall(
        r'<tr data-criterion="([^"]+)" data-label="([^"]+)">(.*?)</tr>', html, re.S
    ):
        cells = [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
        rows[key] = (label, cells[1:])
    return rows


def _sections_order(page: str) -> list[str]:
    return re.findall(r'<section class="cohort[^"]*"[^>]*data-cohort="([^"]+)"', page)


URL = reverse("ratings:dashboard", args=["test-study"])


# Permissions.


@pytest.mark.parametrize(
    "url",
    [
        reverse("ratings:study_list"),
        URL,
        URL + "?cohort=india",
    ],
)
def test_anonymous_visitors_are_sent_to_sign_in(client, scored, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_anonymous_recompute_is_sent_to_sign_in_and_enqueues_nothing(client, scored):
    response = client.post(reverse("ratings:dashboard_recompute", args=["test-study"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", ["rater", "outsider", "researcher_of_another_study", "staff"])
def test_people_not_granted_the_study_get_403_and_no_data(
    scored, rater_india, outsider, study, who
):
    user = {
        "rater": lambda: rater_india.user,
        "outsider": lambda: outsider,
        "researcher_of_another_study": lambda: _granted_elsewhere(),
        "staff": lambda: User.objects.create_user("stella", password="x", is_staff=True),
    }[who]()
    client = _client(user)
    for url in (URL, URL + "?cohort=india"):
        response = client.get(url)
        assert response.status_code == 403
        body = response.content.decode()
        assert "sd-culture-lora" not in body and "consensus" not in body
    response = client.post(reverse("ratings:dashboard_recompute", args=["test-study"]))
    assert response.status_code == 403
    if who != "researcher_of_another_study":
        assert client.get(reverse("ratings:study_list")).status_code == 403


def _granted_elsewhere() -> User:
    other = study_create(name="Other study", slug="other-study")
    user = User.objects.create_user("rene", password="x")
    study_grant(study=other, user=user)
    return user


def test_study_list_shows_only_the_granted_studies_with_links(scored, researcher, study):
    study_create(name="Hidden study", slug="hidden-study")
    _run(study, computed_at=COMPUTED_AT - timedelta(days=3), votes_covered=7)  # older
    response = _client(researcher).get(reverse("ratings:study_list"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Test study" in page and "Hidden study" not in page
    assert f'href="{URL}"' in page
    assert f'href="{reverse("ratings:rater_overview", args=["test-study"])}"' in page
    assert f'href="{URL}#exports"' in page
    assert "14 Mar 2025, 09:26 UTC" in page and ">412<" in page and ">7<" not in page


def test_a_researcher_of_another_study_sees_only_that_one_in_the_list(scored):
    user = _granted_elsewhere()
    page = _client(user).get(reverse("ratings:study_list")).content.decode()
    assert "Other study" in page and "Test study" not in page
    assert "no scores yet" in page


def test_superusers_read_every_study(scored):
    admin = User.objects.create_superuser("ada", "ada@example.org", "x")
    study_create(name="Second study", slug="second-study")
    client = _client(admin)
    page = client.get(reverse("ratings:study_list")).content.decode()
    assert "Test study" in page and "Second study" in page
    assert client.get(URL).status_code == 200


def test_a_study_and_cohort_written_in_spanish_alone_show_by_their_spanish_names(
    scored, researcher, study
):
    # Written in Spanish: no English name for the study or for its cohort India.
    Study.objects.filter(pk=study.pk).update(
        language="es", name="Estudio", name_en="", name_es="Estudio"
    )
    Cohort.objects.filter(path="india").update(name="", name_en="", name_es="la India")
    study_create(name="Another study", slug="another-study")
    admin = User.objects.create_superuser("ada", "ada@example.org", "x")
    listing = _client(admin).get(reverse("ratings:study_list")).content.decode()
    assert listing.index("Another study") < listing.index("Estudio")  # sorted by the name seen
    page = _client(researcher).get(URL).content.decode()
    assert "la India" in page


# The page.


def test_top_level_shows_cultures_with_labels_counts_and_statistics(scored, researcher):
    response = _client(researcher).get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    # Sub-cultures on drill-down; Nigeria, below k, collapses into one line.
    assert _sections_order(page) == ["india", "korea"]
    assert "14 Mar 2025, 09:26 UTC" in page and "412 votes" in page and "vote 9031" in page
    assert "sd-base" in page and "sd-culture-lora" in page

    india = _rows(_section(page, "india"))
    assert {key: label for key, (label, _) in india.items()} == {
        "alignment": "consensus",
        "representation": "split",
        "stereotype": "contested",
        "offensiveness": "consensus",
    }
    # a, tie, b, skip, share of b (interval), ties as half, alpha, nDFU, A, p, GAI (q), raters
    assert india["representation"][1] == [
        "60 (45%)",
        "10 (8%)",
        "62 (47%)",
        "4",
        f"51% (44{DASH}57%)",
        "51%",
        "0.31",
        "0.83",
        "-0.42",
        "0.001",
        "1.37 (q 0.004)",
        "14",
    ]
    assert india["alignment"][1][:4] == ["10 (6%)", "8 (5%)", "150 (89%)", "2"]
    assert _rows(_section(page, "korea"))["alignment"][1][-2:] == ["—", "6"]  # no GAI stored
    # Every vote answers every criterion: India's votes are its alignment answers, skips included.
    assert "14 raters · 170 votes" in _text(_section(page, "india"))
    # The badge is a word in the table too, not a colour only.
    assert '<span class="badge badge-split">split</span>' in _section(page, "india")


def test_cohorts_below_k_collapse_into_one_line_with_no_counts_bars_or_statistics(
    scored, researcher
):
    page = _client(researcher).get(URL).content.decode()
    assert "nigeria" not in _sections_order(page)
    (line,) = re.findall(
        r'<p class="collapsed-cohorts" data-hidden="nigeria">(.*?)</p>', page, re.S
    )
    assert _line(line) == "Not shown here (1): Nigeria (fewer than 5 raters)."
    # Nigeria's counts (b 13, votes 21) and chart appear nowhere on the page.
    assert 'aria-label="Nigeria' not in page
    assert not re.search(r"\b21 votes\b", _text(page))


def test_every_chart_is_an_image_with_a_name_beside_a_table(scored, researcher):
    page = _client(researcher).get(URL).content.decode()
    india = _section(page, "india")
    (label,) = re.findall(r'<svg class="chart diverging" role="img" aria-label="([^"]+)"', india)
    assert label.startswith("India, sd-base versus sd-culture-lora. alignment: consensus, 6% chose")
    assert (
        "representation: split, 45% chose sd-base, 8% both equally, 47% chose sd-culture-lora"
        in label
    )
    assert india.index("<svg") < india.index('<table class="data scores">')


def test_drill_down_shows_the_culture_then_its_subcultures_with_breadcrumbs(scored, researcher):
    page = _client(researcher).get(URL + "?cohort=india").content.decode()
    assert _sections_order(page) == ["india", "india:tamil"]  # Kerala is below k
    assert "Subcultures and periods of India" in page
    crumbs = re.search(r'<nav class="crumbs"[^>]*>(.*?)</nav>', page, re.S).group(1)
    assert f'<a href="{URL}">Test study</a>' in crumbs
    assert '<span aria-current="page">India</span>' in crumbs

    tamil = _rows(_section(page, "india:tamil"))
    assert tamil["representation"][0] == "consensus"
    assert tamil["representation"][1][:4] == ["70 (88%)", "4 (5%)", "6 (8%)", "1"]
    assert "Not shown here (1): Kerala (fewer than 5 raters)." in _line(page)

    # The top level links into India (which has sub-cultures), not into Korea (which has none).
    top = _client(researcher).get(URL).content.decode()
    assert f'href="{URL}?cohort=india"' in _section(top, "india")
    assert "?cohort=korea" not in top


def test_drill_down_hides_a_sibling_that_would_give_a_small_cohort_away(scored, researcher):
    # India 10 = Tamil 8 + Kerala 2 on alignment: Tamil's counts would give Kerala's away.
    Score.objects.filter(run=scored, cohort__path="india", criterion__key="alignment").update(
        n_raters=10
    )
    page = _client(researcher).get(URL + "?cohort=india").content.decode()
    tamil = _rows(_section(page, "india:tamil"))
    assert tamil["alignment"] == (
        "consensus",
        ["hidden so that a smaller cohort's counts cannot be derived"],
    )
    assert tamil["representation"][1][0] == "70 (88%)"  # other criteria stand as they were


def _summary(page: str) -> tuple[list[str], dict[str, list[str]], str]:
    """The summary matrix: its column headings, cohort path -> labels, and the collapsed line."""
    block = re.search(r'<section id="summary".*?</section>', page, re.S).group(0)
    headings = [_text(h) for h in re.findall(r"<th scope=\"col\"[^>]*>(.*?)</th>", block, re.S)]
    rows = {
        path: [_text(cell) for cell in re.findall(r"<td>(.*?)</td>", body, re.S)]
        for path, body in re.findall(r'<tr data-cohort="([^"]+)">(.*?)</tr>', block, re.S)
    }
    collapsed = re.search(r'<p class="collapsed-cohorts"[^>]*>(.*?)</p>', block, re.S)
    return headings, rows, _line(collapsed.group(1)) if collapsed else ""


def test_the_page_opens_with_a_matrix_of_cohorts_and_criteria_splits_first(scored, researcher):
    page = _client(researcher).get(URL).content.decode()
    assert page.index('id="summary"') < page.index('<section class="cohort')
    headings, rows, collapsed = _summary(page)
    assert headings == [
        "Cohort", "Matches prompt", "Represents culture", "More stereotypical", "More offensive"
    ]  # fmt: skip
    assert len(set(headings)) == len(headings)
    # Every level of the hierarchy; India (split on representation) first, then by label.
    assert list(rows) == ["india", "india:tamil", "korea"]
    assert rows["india"] == ["consensus", "split", "contested", "consensus"]
    assert rows["korea"] == ["consensus"] * 4
    # The cohorts below k: one line naming them, nothing else.
    assert (
        collapsed == "Not shown (2): Kerala (fewer than 5 raters), Nigeria (fewer than 5 raters)."
    )
    # Each heading defines itself on hover with the question the raters answered.
    assert '<abbr title="Which image is more stereotypical?">More stereotypical</abbr>' in page
    # A subculture's row leads to its panel on its culture's page.
    assert f'href="{URL}?cohort=india#cohort-india-tamil"' in page
    # The drill-down pages show the panels, not the summary again.
    assert 'id="summary"' not in _client(researcher).get(URL + "?cohort=india").content.decode()


def test_the_summary_says_when_no_cohort_is_split(scored, researcher):
    Score.objects.filter(run=scored, heterogeneity_p__lt=0.01).update(heterogeneity_p=0.5)
    page = _client(researcher).get(URL).content.decode()
    assert "No cohort is split on any criterion." in page
    _, rows, _ = _summary(page)
    assert "split" not in {label for labels in rows.values() for label in labels}


def test_every_score_column_has_a_unique_name_and_a_definition(scored, researcher):
    page = _client(researcher).get(URL).content.decode()
    table = re.search(r'<table class="data scores">.*?</thead>', page, re.S).group(0)
    headings = [_text(h) for h in re.findall(r"<th scope=\"col\"[^>]*>(.*?)</th>", table, re.S)]
    assert len(set(headings)) == len(headings), headings
    legend = re.search(r'<details class="legend-help">.*?</details>', page, re.S).group(0)
    for name in ("nDFU", "Agreement", "Heterogeneity p", "GAI (q)", "Alpha", "Share of b"):
        assert f"<dt>{name}</dt>" in legend


def test_unknown_or_foreign_cohorts_are_not_found(scored, researcher):
    cohort_ensure(path="mexico")
    client = _client(researcher)
    assert client.get(URL + "?cohort=mexico").status_code == 404
    assert client.get(URL + "?cohort=atlantis").status_code == 404
    assert client.get(reverse("ratings:dashboard", args=["no-such-study"])).status_code == 404


def test_labels_follow_the_study_thresholds_at_read_time(scored, researcher, study):
    Study.objects.filter(pk=study.pk).update(split_max_p=0.0005)
    page = _client(researcher).get(URL).content.decode()
    # Heterogeneity p 0.001 no longer passes: not split, and no answer holds 60%.
    assert _rows(_section(page, "india"))["representation"][0] == "contested"


def test_the_newest_finished_run_is_shown_never_a_failed_or_older_one(scored, researcher, study):
    _run(study, computed_at=COMPUTED_AT - timedelta(days=3), votes_covered=7)
    _run(
        study,
        status=ScoreRun.Status.FAILED,
        computed_at=COMPUTED_AT + timedelta(days=1),
        votes_covered=999,
    )
    page = _client(researcher).get(URL).content.decode()
    assert "412 votes" in page
    # 999 standing alone: a CSRF token's random letters and digits may hold "999".
    assert not re.search(r"(?<![A-Za-z0-9])999(?![A-Za-z0-9])", page)
    assert " 7 votes" not in page
    assert "Recomputing" not in page


def test_the_cross_criterion_table_shows_a_cohort_split_on_representation(scored, researcher):
    page = _client(researcher).get(URL).content.decode()
    table = re.search(r'<table class="data coherence">(.*?)</table>', page, re.S).group(1)
    rows = {
        cohort: _text(body)
        for cohort, body in re.findall(r'<tr data-cohort="([^"]+)">(.*?)</tr>', table, re.S)
    }
    assert list(rows) == ["india", "korea", "nigeria"]
    assert rows["india"] == (
        "India sd-base / sd-culture-lora 14 20 (49%) 2 (5%) 19 (46%) 0.90 polarized"
    )
    assert rows["korea"].endswith("0.00 not polarized")
    assert rows["nigeria"] == "Nigeria sd-base / sd-culture-lora fewer than 5 raters"
    assert 'aria-label="India, representation answers: 49% the same image better' in table


def _imported_pairs(study: Study, variants: list[ModelVariant], count: int) -> list[Pair]:
    """Pairs known by item id only, as an import makes them: no images, no rendering."""
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    prompt = Prompt.objects.create(
        batch=batch, text="a wedding in Chennai", cohort=Cohort.objects.get(path="india")
    )
    return [
        Pair.objects.create(
            study=study,
            prompt=prompt,
            variant_a=variants[0],
            variant_b=variants[1],
            external_id=f"item-{n}",
        )
        for n in range(count)
    ]


def test_coverage_counts_raters_votes_and_pairs_at_target(
    scored, researcher, study, score_variants, rater_india, rater_tamil
):
    india = Cohort.objects.get(path="india")
    # Three votes are the target per pair (raters_per_pair): one pair there, one started.
    for pair, votes in zip(_imported_pairs(study, score_variants, 3), (3, 1, 0), strict=True):
        PairCoverage.objects.create(study=study, pair=pair, cohort=india, votes=votes)
    page = _client(researcher).get(URL).content.decode()
    table = re.search(r'<table class="data coverage">(.*?)</table>', page, re.S).group(1)
    rows = {
        cohort: _text(body)
        for cohort, body in re.findall(r'<tr data-cohort="([^"]+)">(.*?)</tr>', table, re.S)
    }
    assert rows == {
        "india": "India india 14 170 3 2 1 (33%)",
        "korea": "Korea korea 6 60 0 0 0 (0%)",
        "nigeria": "Nigeria nigeria fewer than 5 raters 0 — —",
    }
    assert "Raters consented</dt><dd>2<" in page  # asha and kavya
    assert "Pairs</dt><dd>3<" in page


def test_bradley_terry_strengths_show_for_cohorts_that_have_them(scored, researcher):
    page = _client(researcher).get(URL).content.decode()
    korea = _section(page, "korea")
    assert f"Bradley{DASH}Terry strengths in Korea" in korea
    assert "alignment sd-culture-lora 0.41 0.21 to 0.61" in _text(korea)
    assert f"Bradley{DASH}Terry" not in _section(page, "india")


def test_without_scores_the_page_says_so_and_offers_recompute(study, researcher):
    page = _client(researcher).get(URL).content.decode()
    assert "No scores yet." in page
    assert 'action="' + reverse("ratings:dashboard_recompute", args=["test-study"]) in page
    assert "csrfmiddlewaretoken" in page
    assert _sections_order(page) == []


def test_a_running_recompute_is_shown_with_its_start(scored, researcher, study):
    ScoreRun.objects.create(
        study=study,
        status=ScoreRun.Status.RUNNING,
        started_at=COMPUTED_AT + timedelta(hours=2, minutes=5),
        permutations=1000,
        bootstrap=1000,
    )
    markup = _client(researcher).get(URL).content.decode()
    page = _text(markup)
    assert "Recomputing … running since 14 Mar 2025, 11:31:00 UTC" in page
    assert "412 votes" in page  # the latest finished scores stay on the page meanwhile
    assert '<meta http-equiv="refresh" content="3">' in markup  # until the run lands


def _queued_tasks(broker: redis.Redis) -> list[tuple[str, str]]:
    """Return (task name, args) of every message waiting in the broker's queues."""
    queued = []
    for key in broker.scan_iter():
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            headers = json.loads(raw).get("headers", {})
            queued.append((headers.get("task"), headers.get("argsrepr")))
    return queued


def test_recompute_now_enqueues_the_task_and_comes_back(scored, researcher, study, settings):
    try:
        import ratings.results.tasks  # noqa: F401
    except ImportError:
        pytest.skip("ratings.results.tasks (scores_compute_task) is not written yet")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    client = _client(researcher)
    try:
        response = client.post(
            reverse("ratings:dashboard_recompute", args=["test-study"]), {"cohort": "india"}
        )
        assert response.status_code == 302
        assert response["Location"] == URL + "?cohort=india"
        # A real message on the real broker, for the task, with the study's id.
        assert _queued_tasks(broker) == [("ratings.tasks.scores_compute_task", f"({study.pk},)")]
    finally:
        broker.flushdb()
    page = client.get(response["Location"]).content.decode()
    assert "Recomputing the scores, asked at" in page
    assert (
        client.get(reverse("ratings:dashboard_recompute", args=["test-study"])).status_code == 405
    )
    # Until a run starts, the page says the recompute is queued and looks again by itself.
    page = client.get(URL).content.decode()
    assert "Recompute queued" in _text(page)
    assert '<meta http-equiv="refresh" content="3">' in page
    # Once a run has started after the request, it is no longer queued; once it is done, the
    # page stops looking again.
    _run(study, started_at=timezone.now(), computed_at=timezone.now())
    page = client.get(URL).content.decode()
    assert "Recompute queued" not in page and 'http-equiv="refresh"' not in page


# Export links: the URL names come from the exports; the page lives with or without them.


def _export_view(request, **kwargs):  # pragma: no cover - only reversed, never called
    raise AssertionError


urlpatterns_with_exports = [
    path(
        "",
        include(
            (
                [
                    *ratings.urls.urlpatterns,
                    path("x/<slug:slug>/<str:table>.<str:fmt>", _export_view, name="export"),
                    path("x/<slug:slug>/<str:table>.md", _export_view, name="export_card"),
                ],
                "ratings",
            )
        ),
    ),
    *[
        pattern
        for pattern in webapp_urls.urlpatterns
        if getattr(pattern, "namespace", "") != "ratings"
    ],
]
urlpatterns_without_exports = [
    path(
        "",
        include(
            (
                [
                    pattern
                    for pattern in ratings.urls.urlpatterns
                    if pattern.name not in {"export", "export_card", "export_votes_csv"}
                ],
                "ratings",
            )
        ),
    ),
    *[
        pattern
        for pattern in webapp_urls.urlpatterns
        if getattr(pattern, "namespace", "") != "ratings"
    ],
]


class _UrlConf:
    def __init__(self, patterns):
        self.urlpatterns = patterns


def test_export_buttons_link_every_table_in_every_format_and_its_card(scored, researcher, settings):
    settings.ROOT_URLCONF = _UrlConf(urlpatterns_with_exports)
    page = _client(researcher).get(URL).content.decode()
    section = re.search(r'<section id="exports".*?</section>', page, re.S).group(0)
    links = re.findall(r'href="(/x/[^"]+)"', section)
    assert links == [
        f"/x/test-study/{table}.{fmt}" if fmt else f"/x/test-study/{table}.md"
        for table in ("votes_long", "votes_wide", "scores", "splits")
        for fmt in ("csv", "jsonl", "parquet", None)
    ]


def test_without_export_urls_the_page_renders_without_the_export_section(
    scored, researcher, settings
):
    settings.ROOT_URLCONF = _UrlConf(urlpatterns_without_exports)
    response = _client(researcher).get(URL)
    assert response.status_code == 200
    assert 'id="exports"' not in response.content.decode()
