"""`manage.py import_votes`: votes from earlier surveys, every bad row by its line, idempotent."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from generation.models import ModelVariant, Prompt, PromptBatch
from ratings.assignment.services import pair_assign
from ratings.exports.vote_files import VoteFileError, votes_file_parse
from ratings.models import (
    Answer,
    Cohort,
    Criterion,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Study,
    Vote,
)
from ratings.studies import study_create

HEADER = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice,prompt,category,created_at"

# An earlier survey in the published study's shape: cultures and a sub-culture, one base model
# and fine-tuned variants, each item shown as pairs of the base with each fine-tuned image.
EARLIER_SURVEY = "\n".join(
    [
        HEADER,
        "p01,india,in-food-1,sd14,sd14-india,representation,b,a plate of idli,food,"
        "2023-11-02T10:00:00Z",
        "p01,india,in-food-1,sd14,sd14-india,stereotype,a,a plate of idli,food,"
        "2023-11-02T10:00:05Z",
        "p01,india,in-food-1,sd14,sd14-india-v2,representation,tie,a plate of idli,food,",
        "p02,india:tamil,in-food-1,sd14,sd14-india,representation,a,a plate of idli,food,",
        "p02,india:tamil,in-food-1,sd14,sd14-india,offensiveness,skip,a plate of idli,food,",
        "p03,korea,kr-arch-1,sd14,sd14-korea,alignment,b,a hanok with a tiled roof,"
        "architecture,2023-11-03 08:15:00",
        "p04,nigeria;korea,kr-arch-1,sd14,sd14-korea,alignment,a,a hanok with a tiled roof,"
        "architecture,",
        'p05,nigeria,ng-fest-1,sd14,sd14-nigeria,representation,B,"a durbar festival,\n'
        'horses in procession",festivals,',
    ]
)


def _file(tmp_path, text: str | bytes, name: str = "votes.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _import(path, slug: str = "earlier-survey") -> str:
    out = io.StringIO()
    call_command("import_votes", str(path), "--study", slug, stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    models = (Study, Cohort, Rater, User, ModelVariant, Prompt, Pair, Vote, Answer, Participation)
    return {model.__name__: model.objects.count() for model in models}


def _parse(text: str, **kwargs):
    return votes_file_parse(io.BytesIO(text.encode()).readlines(), **kwargs)


def _errors(text: str | bytes, **kwargs) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(VoteFileError) as caught:
        votes_file_parse(io.BytesIO(data).readlines(), **kwargs)
    return [str(error) for error in caught.value.errors]


# Parsing, without a database.


def test_rows_fold_into_one_vote_per_rater_item_and_variant_pair():
    parsed = _parse(EARLIER_SURVEY)
    assert parsed.rows == 8
    assert set(parsed.raters) == {"p01", "p02", "p03", "p04", "p05"}
    assert set(parsed.items["in-food-1"].variant_pairs) == {
        ("sd14", "sd14-india"),
        ("sd14", "sd14-india-v2"),
    }
    vote = parsed.votes[("p01", "in-food-1", "sd14", "sd14-india")]
    assert {key: choice for key, (choice, _) in vote.answers.items()} == {
        "representation": "b",
        "stereotype": "a",
    }
    # The vote is as old as its first answer.
    assert vote.created_at == datetime(2023, 11, 2, 10, 0, tzinfo=UTC)
    assert parsed.votes[("p04", "kr-arch-1", "sd14", "sd14-korea")].cohort_paths == (
        "korea",
        "nigeria",
    )
    # A time without a zone is UTC; a choice in capitals is still a choice.
    assert parsed.votes[("p03", "kr-arch-1", "sd14", "sd14-korea")].created_at == datetime(
        2023, 11, 3, 8, 15, tzinfo=UTC
    )
    festival = parsed.votes[("p05", "ng-fest-1", "sd14", "sd14-nigeria")]
    assert festival.answers == {"representation": ("b", 9)}
    assert parsed.items["ng-fest-1"].prompt == "a durbar festival,\nhorses in procession"
    assert parsed.items["kr-arch-1"].target_cohort == "korea"


def test_every_kind_of_bad_row_is_reported_by_its_file_line():
    text = "\n".join(
        [
            HEADER,
            "r1,india,item-1,base,tuned,alignment,a,a plate of idli,food,",  # 2: good
            ",india,item-1,base,tuned,alignment,a,,,",  # 3: empty rater_id
            "r2,india,item-1,base,tuned,beauty,a,,,",  # 4: unknown criterion
            "r2,india,item-1,base,tuned,alignment,left,,,",  # 5: bad choice
            "r2,India Tamil,item-1,base,tuned,stereotype,a,,,",  # 6: bad cohort path
            "r2,india,item-1,base,tuned,offensiveness,a,,,yesterday",  # 7: bad created_at
            "r1,india,item-1,base,tuned,alignment,b,,,",  # 8: contradicts line 2
            "r3,india,item-1,tuned,base,alignment,a,,,",  # 9: pair reversed
            "r3,india,item-1,base,base,alignment,a,,,",  # 10: same variant twice
            "r3,india,item-1,base,tuned,alignment",  # 11: too few fields
            "r3,india,item-1,base,tuned,alignment,a,another prompt,,",  # 12: prompt differs
            "r1,korea,item-1,base,tuned,stereotype,a,,,",  # 13: cohort differs for one vote
            "r3,india,item-1,base,tuned,alignment,a,," + "x" * 41 + ",",  # 14: long category
            "r" * 65 + ",india,item-1,base,tuned,alignment,a,,,",  # 15: long rater_id
        ]
    )
    errors = _errors(text)
    assert errors == [
        "line 3: empty rater_id",
        "line 4: unknown criterion 'beauty': use alignment, representation, stereotype, "
        "offensiveness",
        "line 5: bad choice 'left': use a, b, tie, skip",
        "line 6: bad cohort: 'India Tamil' is not a cohort path: use "
        "culture[:subculture[:period]], each part lower-case letters, digits, '-' or '_' "
        "(for example india:tamil:contemporary).",
        "line 7: bad created_at 'yesterday': use ISO 8601, for example 2024-03-01T12:30:00Z",
        "line 8: alignment is 'b' here and 'a' on line 2 for the same rater, item and variant pair",
        "line 9: variant pair tuned/base of item 'item-1' is given the other way round, "
        "base/tuned, on line 2",
        "line 10: variant_a and variant_b are the same variant",
        "line 11: 6 fields, the header has 10",
        "line 12: prompt differs from line 2 for item 'item-1'",
        "line 13: cohort 'korea' differs from 'india' on line 2, the same rater's vote on the "
        "same item and variant pair",
        "line 14: category is longer than 40 characters",
        "line 15: rater_id is longer than 64 characters",
    ]


def test_bad_bytes_and_bad_header_are_named_by_line():
    good = "r1,india,item-1,base,tuned,alignment,a\n"
    data = (
        b"\xef\xbb\xbfrater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"
        + good.encode()
        + b"r2,india,item-\xff,base,tuned,alignment,a\n"
        + good.replace("r1", "r3").encode()
    )
    assert _errors(data) == ["line 3: undecodable bytes (not UTF-8) at byte 14"]
    assert _errors("rater_id,cohort,item_id,criterion,choice\n" + good) == [
        "line 1: bad header: missing column(s) variant_a, variant_b (expected "
        "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice"
        "[,prompt,category,created_at])"
    ]
    assert _errors("") == ["The file is empty: it needs a header and rows."]
    assert _errors(HEADER + "\n\n") == ["The file holds no votes."]


def test_an_item_needs_a_culture_to_aim_its_prompt_at():
    text = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"
    text += "r1,,item-1,base,tuned,alignment,a\n"
    assert _errors(text) == [
        "line 2: item 'item-1' has no cohort on any row and no prompt_cohort: its prompt "
        "needs the culture it was aimed at"
    ]
    # The export's prompt_cohort column names it where the rater's labels were dropped.
    parsed = _parse(text.replace("choice", "choice,prompt_cohort").replace(",a\n", ",a,korea\n"))
    assert parsed.items["item-1"].target_cohort == "korea"
    assert parsed.votes[("r1", "item-1", "base", "tuned")].cohort_paths == ()


def test_attention_check_rows_are_skipped_and_flags_kept():
    text = "\n".join(
        [
            "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice,rater_flagged,"
            "attention_check",
            "r1,india,7,base,tuned,alignment,a,true,",
            "r1,india,8,base,base,alignment,tie,true,identical",
            "r1,india,7,base,tuned,alignment,b,true,repeat",
            "r2,india,7,base,tuned,alignment,b,false,",
        ]
    )
    parsed = _parse(text)
    assert (parsed.rows, parsed.checks_skipped) == (2, 2)
    assert set(parsed.items) == {"7"}
    assert parsed.raters["r1"].flagged
    assert not parsed.raters["r2"].flagged


def test_the_studys_own_criteria_are_the_ones_accepted():
    text = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"
    assert _parse(text + "r1,india,1,a,b,beauty,a\n", criteria=["beauty"]).votes
    assert _errors(text + "r1,india,1,a,b,alignment,a\n", criteria=["beauty"]) == [
        "line 2: unknown criterion 'alignment': use beauty"
    ]
    # Case does not matter in a key or a choice; the study's spelling is kept.
    parsed = _parse(text + "r1,india,1,a,b,Alignment,TIE\n")
    assert parsed.votes[("r1", "1", "a", "b")].answers == {"alignment": ("tie", 2)}


# The command, against PostgreSQL.


def test_earlier_survey_creates_its_study_cohorts_raters_pairs_and_votes(db, tmp_path):
    output = _import(_file(tmp_path, EARLIER_SURVEY))

    assert "Created study 'earlier-survey'" in output
    assert "Created 5 raters, 4 pairs, 6 votes, 8 answers." in output
    assert "6 new votes, 0 already present." in output
    study = Study.objects.get(slug="earlier-survey")
    assert not study.active  # nothing in it can be shown to a rater
    assert list(study.criteria.values_list("key", flat=True)) == [
        "alignment",
        "representation",
        "stereotype",
        "offensiveness",
    ]
    # Every label with its ancestors, all listed by the study.
    assert sorted(study.cohorts.values_list("path", flat=True)) == [
        "india",
        "india:tamil",
        "korea",
        "nigeria",
    ]
    assert Cohort.objects.get(path="india:tamil").parent.path == "india"

    variants = ModelVariant.objects.filter(name__startswith="sd14")
    assert sorted(variants.values_list("name", "role", "base_checkpoint")) == [
        ("sd14", "imported", ""),
        ("sd14-india", "imported", ""),
        ("sd14-india-v2", "imported", ""),
        ("sd14-korea", "imported", ""),
        ("sd14-nigeria", "imported", ""),
    ]

    pairs = Pair.objects.filter(study=study)
    assert sorted(pairs.values_list("external_id", "variant_a__name", "variant_b__name")) == [
        ("in-food-1", "sd14", "sd14-india"),
        ("in-food-1", "sd14", "sd14-india-v2"),
        ("kr-arch-1", "sd14", "sd14-korea"),
        ("ng-fest-1", "sd14", "sd14-nigeria"),
    ]
    assert set(pairs.values_list("seed", "image_a", "image_b")) == {(None, None, None)}
    # One prompt per item, shared by its variant pairs, aimed at the first cohort seen.
    idli = Prompt.objects.get(pairs__external_id="in-food-1", pairs__variant_b__name="sd14-india")
    assert (idli.text, idli.category, idli.cohort.path) == ("a plate of idli", "food", "india")
    assert Pair.objects.filter(external_id="in-food-1").values("prompt").distinct().count() == 1
    assert idli.batch.status == PromptBatch.Status.DONE
    assert Prompt.objects.get(pairs__external_id="ng-fest-1").text == (
        "a durbar festival,\nhorses in procession"
    )

    p04 = Rater.objects.get(panel_id="import:earlier-survey:p04")
    assert not p04.user.is_active and not p04.user.has_usable_password()
    assert "p04" not in p04.user.username
    assert p04.cohort_paths() == ["korea", "nigeria"]
    assert Participation.objects.filter(study=study).count() == 5

    vote = Vote.objects.get(
        rater__panel_id="import:earlier-survey:p01", pair__variant_b__name="sd14-india"
    )
    assert (vote.source, vote.shown_left, vote.time_on_task_ms, vote.kind) == (
        "import",
        "",
        0,
        "pair",
    )
    assert vote.cohort_paths == ["india"]
    assert vote.created_at == datetime(2023, 11, 2, 10, 0, tzinfo=UTC)
    assert dict(vote.answers.values_list("criterion__key", "choice")) == {
        "representation": "b",
        "stereotype": "a",
    }
    tamil = Vote.objects.get(rater__panel_id="import:earlier-survey:p02")
    assert tamil.cohort_paths == ["india:tamil"]
    assert dict(tamil.answers.values_list("criterion__key", "choice")) == {
        "representation": "a",
        "offensiveness": "skip",
    }


def test_bad_rows_import_nothing_and_the_command_lists_them(db, tmp_path):
    before = _counts()
    bad = EARLIER_SURVEY + "\np06,india,in-food-1,sd14,sd14-india,beauty,a,,,\n"
    bad += "p01,india,in-food-1,sd14,sd14-india,representation,a,,,\n"

    with pytest.raises(CommandError) as caught:
        _import(_file(tmp_path, bad))

    message = str(caught.value)
    assert "has 2 bad rows; nothing was imported" in message
    assert "line 11: unknown criterion 'beauty'" in message
    assert "line 12: representation is 'a' here and 'b' on line 2" in message
    assert _counts() == before
    assert not Study.objects.filter(slug="earlier-survey").exists()


def test_a_long_list_of_bad_rows_is_cut_short_and_says_how_many_more(db, tmp_path):
    rows = [f"r{n},india,item-{n},base,tuned,alignment,maybe" for n in range(120)]
    text = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n" + "\n".join(rows)

    with pytest.raises(CommandError) as caught:
        _import(_file(tmp_path, text))

    message = str(caught.value)
    assert "has 120 bad rows" in message
    assert "line 51: bad choice 'maybe'" in message
    assert "line 52:" not in message
    assert message.endswith("... and 70 more")


def test_importing_the_same_file_twice_adds_nothing(db, tmp_path):
    path = _file(tmp_path, EARLIER_SURVEY)
    _import(path)
    before = _counts()

    output = _import(path)

    assert "Created 0 raters, 0 pairs, 0 votes, 0 answers." in output
    assert "0 new votes, 6 already present." in output
    assert "Created study" not in output
    assert _counts() == before
    assert PromptBatch.objects.count() == 1


def test_a_later_file_adds_answers_pairs_and_raters_to_what_is_there(db, tmp_path):
    _import(_file(tmp_path, EARLIER_SURVEY))
    later = "\n".join(
        [
            HEADER,
            # Known vote, a criterion it lacked; a known item in a new variant pair; a new rater.
            "p01,india,in-food-1,sd14,sd14-india,alignment,tie,,,",
            "p01,india,in-food-1,sd14,sd14-india,representation,b,,,",
            "p03,korea,kr-arch-1,sd14,sd14-korea-v2,alignment,b,,,",
            "p09,india:tamil:contemporary,in-food-1,sd14,sd14-india,alignment,a,,,",
        ]
    )

    output = _import(_file(tmp_path, later, "later.csv"))

    assert "Created 1 raters, 1 pairs, 2 votes, 3 answers." in output
    assert "2 new votes, 1 already present." in output
    vote = Vote.objects.get(
        rater__panel_id="import:earlier-survey:p01", pair__variant_b__name="sd14-india"
    )
    assert dict(vote.answers.values_list("criterion__key", "choice")) == {
        "alignment": "tie",
        "representation": "b",
        "stereotype": "a",
    }
    # The new variant pair of a known item shows the item's prompt, not a second one.
    new_pair = Pair.objects.get(variant_b__name="sd14-korea-v2")
    assert new_pair.prompt == Pair.objects.get(variant_b__name="sd14-korea").prompt
    assert "india:tamil:contemporary" in Study.objects.get(
        slug="earlier-survey"
    ).cohorts.values_list("path", flat=True)


def test_a_row_contradicting_an_imported_vote_is_refused_by_its_line(db, tmp_path):
    _import(_file(tmp_path, EARLIER_SURVEY))
    before = _counts()
    contradiction = "\n".join(
        [
            HEADER,
            "p09,korea,kr-arch-2,sd14,sd14-korea,alignment,a,,,",
            "p01,india,in-food-1,sd14,sd14-india,stereotype,b,,,",
            "p02,india,in-food-1,sd14,sd14-india,alignment,a,,,",
            "p03,korea,kr-arch-1,sd14-korea,sd14,alignment,a,,,",
        ]
    )

    with pytest.raises(CommandError) as caught:
        _import(_file(tmp_path, contradiction, "again.csv"))

    message = str(caught.value)
    assert "has 3 bad rows" in message
    assert "line 3: stereotype is 'b' here but 'a' in the vote imported before" in message
    assert (
        "line 4: cohort 'india' contradicts the vote imported before, with cohort 'india:tamil'"
        in message
    )
    assert (
        "line 5: variant pair sd14-korea/sd14 of item 'kr-arch-1' was imported before the "
        "other way round, sd14/sd14-korea" in message
    )
    assert _counts() == before


def test_import_into_an_existing_study_uses_its_criteria_and_adds_its_cohorts(db, tmp_path):
    study = study_create(name="Beauty", slug="beauty", cohort_paths=["korea"])
    study.criteria.all().delete()
    Criterion.objects.create(study=study, key="beauty", question="Which is more beautiful?")
    text = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"

    with pytest.raises(CommandError, match="line 2: unknown criterion 'alignment': use beauty"):
        _import(_file(tmp_path, text + "r1,korea,1,base,tuned,alignment,a\n"), slug="beauty")
    output = _import(_file(tmp_path, text + "r1,mexico:oaxaca,1,base,tuned,beauty,b\n"), "beauty")

    assert "Created study" not in output
    study.refresh_from_db()
    assert study.active  # an existing study keeps its settings
    assert sorted(study.cohorts.values_list("path", flat=True)) == [
        "korea",
        "mexico",
        "mexico:oaxaca",
    ]
    assert list(Answer.objects.values_list("criterion__key", "choice")) == [("beauty", "b")]


def test_imported_pairs_are_never_served_to_raters(tmp_path, study, rater_india):
    text = "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"
    _import(_file(tmp_path, text + "r1,india,1,base,tuned,alignment,a\n"), slug=study.slug)
    # A later file brings a culture under india: the study's pairs about india gain coverage
    # rows for it, but an imported pair has no images and must not be among them.
    _import(
        _file(tmp_path, text + "r2,india:kerala:malabar,2,base,tuned,alignment,b\n", "b.csv"),
        slug=study.slug,
    )

    assert Pair.objects.filter(study=study).count() == 2
    assert not PairCoverage.objects.filter(study=study).exists()
    assert pair_assign(study=study, rater=rater_india) is None


def test_flagged_raters_stay_flagged_and_attention_checks_are_not_imported(db, tmp_path):
    text = "\n".join(
        [
            "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice,rater_flagged,"
            "attention_check",
            "r1,india,7,base,tuned,alignment,a,true,",
            "r1,india,8,base,base,alignment,tie,true,identical",
            "r2,india,7,base,tuned,alignment,b,false,",
        ]
    )

    output = _import(_file(tmp_path, text))

    assert "Read 2 rows from votes.csv (1 attention-check rows skipped)." in output
    flags = dict(Participation.objects.values_list("rater__panel_id", "flagged"))
    assert flags == {"import:earlier-survey:r1": True, "import:earlier-survey:r2": False}
    assert Pair.objects.count() == 1


def test_a_rater_id_of_someone_who_can_sign_in_is_refused(db, tmp_path):
    user = User.objects.create_user(username="panel-visitor")
    Rater.objects.create(user=user, panel_id="import:earlier-survey:p01")
    Study.objects.create(name="Earlier", slug="earlier-survey")

    with pytest.raises(CommandError, match="line 2: rater_id 'p01' names a rater who can sign in"):
        _import(_file(tmp_path, EARLIER_SURVEY))
    assert not Vote.objects.exists()


def test_a_missing_file_and_a_bad_slug_are_refused(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        _import(tmp_path / "absent.csv")
    with pytest.raises(CommandError, match="is not a study slug"):
        _import(_file(tmp_path, EARLIER_SURVEY), slug="earlier survey")


@pytest.mark.django_db
def test_a_cohort_added_later_gives_imported_pairs_no_coverage_so_they_are_never_served(
    tmp_path,
):
    from ratings.models import PairCoverage
    from ratings.studies import cohort_ensure

    _import(_file(tmp_path, EARLIER_SURVEY))
    study = Study.objects.get(slug="earlier-survey")
    # A sub-culture of a culture the imported items target joins the study afterwards (from
    # the admin, a proposal or code): the backfill must skip pairs without images.
    study.cohorts.add(cohort_ensure(path="india:kerala", name="Kerala"))
    imported = Pair.objects.filter(study=study, image_a__isnull=True)
    assert imported.exists()
    assert not PairCoverage.objects.filter(pair__in=imported).exists()


def test_a_large_import_leaves_the_planner_statistics_of_what_it_wrote(db, tmp_path):
    # 1,200 votes: the vote table is analyzed inside the import, so an export or recompute
    # right after is planned for the rows that are there, not for an empty table.
    rows = [HEADER] + [
        f"r{rater:03d},india,item-{item},sd14,sd14-india,representation,a,a plate of idli,food,"
        for rater in range(120)
        for item in range(10)
    ]
    _import(_file(tmp_path, "\n".join(rows)))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'ratings_vote'")
        (estimate,) = cursor.fetchone()
    assert estimate == 1200
