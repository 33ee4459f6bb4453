"""The study's own texts in the rater's language, and words that tell raters the truth (issue 13).

A study translated into Spanish shows its consent, questions, cohort names, prompts and
completion text in Spanish to a Spanish rater, and the study's own words where a translation is
missing; batch files carry prompt translations; the language menu names each language in its
own name; the Stop pages say how each kind of rater comes back.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from generation.batch_files import BatchFileError, prompt_rows_parse
from generation.models import Prompt
from ratings.models import Cohort, Criterion, Study, StudyInvite
from tests.rating_pages import SCREEN_ANSWERS, form_answers, served_assignment_id

RATE = reverse("ratings:rate", args=["test-study"])
VOTE = reverse("ratings:vote", args=["test-study"])
OWN_QUESTION = "Which image would upset people in {culture}?"


@pytest.fixture
def translated(study, pair_factory):
    """The test study in Spanish, but for one question of its own and one prompt."""
    Study.objects.filter(pk=study.pk).update(
        name_es="Estudio de prueba",
        consent_text_es="Puede parar cuando quiera.",
        completion_text="Thank you, from the study team.",
        completion_text_en="Thank you, from the study team.",
        completion_text_es="Gracias, del equipo del estudio.",
        pairs_per_rater=5,
        attention_check_rate=0,
        min_seconds_per_pair=0,
    )
    Criterion.objects.filter(study=study, key="alignment").update(
        question_es="¿Qué imagen muestra mejor la descripción?"
    )
    Criterion.objects.filter(study=study, key="offensiveness").update(
        question=OWN_QUESTION, question_en=OWN_QUESTION
    )
    Cohort.objects.filter(path="india").update(name_es="la India")
    for _ in range(3):
        pair = pair_factory()
        pair.prompt.text_es = pair.prompt.text.replace("a plate of idli", "un plato de idli")
        pair.prompt.save(update_fields=["text_es"])
    pair_factory(text="untranslated prompt")
    return study


def _client(user, language: str) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_a_spanish_rater_reads_the_study_in_spanish_and_its_own_words_where_untranslated(
    translated, rater_india
):
    client = _client(rater_india.user, "es")
    seen_translated = seen_fallback = False
    page = _page(client, RATE)
    for _ in range(4):
        assert 'lang="es"' in page
        assert "¿Qué imagen muestra mejor la descripción?" in page  # the study's Spanish
        assert "Which image would upset people in la India?" in page  # its own, no Spanish
        assert "Which image better matches the description?" not in page
        if "un plato de idli" in page:
            seen_translated = True
            # The prompt the images were rendered from is one tap away.
            assert '<details class="original" id="prompt-original-box">' in page
            assert "a plate of idli" in page
        else:
            seen_fallback = True
            assert "untranslated prompt" in page  # no Spanish: shown as written
            assert '<details class="original" id="prompt-original-box" hidden>' in page
        response = client.post(
            VOTE,
            {"assignment": served_assignment_id(page), **form_answers(SCREEN_ANSWERS)},
            HTTP_ACCEPT="application/json",
        )
        following = json.loads(response.content)
        if "redirect" in following:
            break
        # The next pair, as JSON, in Spanish too, with the original beside a translation.
        assert following["questions"][0]["text"] == "¿Qué imagen muestra mejor la descripción?"
        page = _page(client, RATE)
        assert following["prompt"] in page
        if following["prompt"].startswith("un plato"):
            assert following["prompt_original"].startswith("a plate of idli")
        else:
            assert following["prompt_original"] == ""
    assert seen_translated and seen_fallback


def test_an_english_rater_reads_the_study_as_written(translated, rater_india):
    page = _page(_client(rater_india.user, "en"), RATE)
    assert "Which image better matches the description?" in page
    assert "Which image would upset people in India?" in page
    assert "un plato" not in page and "¿Qué imagen" not in page
    assert '<details class="original" id="prompt-original-box" hidden>' in page


def test_consent_cohorts_and_completion_in_spanish_with_fallback(translated, outsider):
    client = _client(outsider, "es")
    consent = _page(client, reverse("ratings:consent", args=["test-study"]))
    assert "Puede parar cuando quiera." in consent and "Estudio de prueba" in consent
    assert "You may stop at any time." not in consent
    client.post(reverse("ratings:consent", args=["test-study"]), {"decision": "accept"})
    cohorts = _page(client, reverse("ratings:cohorts", args=["test-study"]))
    assert "la India" in cohorts
    assert "Korea" in cohorts  # no Spanish name: the study's own
    with translation.override("es"):
        study = Study.objects.get(slug="test-study")
        assert study.completion_text == "Gracias, del equipo del estudio."
        Study.objects.filter(pk=study.pk).update(consent_text_es="")
        assert Study.objects.get(pk=study.pk).consent_text == "You may stop at any time."


def test_completion_page_shows_the_completion_text_in_the_raters_language(translated, rater_india):
    Study.objects.filter(pk=translated.pk).update(pairs_per_rater=1)
    client = _client(rater_india.user, "es")
    page = _page(client, RATE)
    client.post(VOTE, {"assignment": served_assignment_id(page), **form_answers(SCREEN_ANSWERS)})
    done = _page(client, reverse("ratings:complete", args=["test-study"]))
    assert "Gracias, del equipo del estudio." in done


@pytest.mark.parametrize("language", ["en", "es"])
def test_language_menu_names_each_language_in_its_own_name(study, outsider, language):
    page = _page(_client(outsider, language), reverse("ratings:consent", args=["test-study"]))
    assert '<option value="en" lang="en"' in page and ">English</option>" in page
    assert ">Español</option>" in page
    assert "Inglés" not in page and ">Spanish<" not in page


def test_batch_files_carry_prompt_translations():
    data = (
        b"prompt,cohort,category,prompt_es\n"
        b"a plate of idli,india,food,un plato de idli\n"
        b"a street,india,place,\n"
    )
    rows = prompt_rows_parse(data, filename="p.csv", known_cohorts=["india"], languages=["es"])
    assert rows[0].translations == (("es", "un plato de idli"),)
    assert rows[1].translations == ()
    jsonl = (
        b'{"prompt": "a hat", "cohort": "india", "category": "dress", "prompt_es": "un sombrero"}\n'
    )
    (row,) = prompt_rows_parse(jsonl, filename="p.jsonl", known_cohorts=["india"], languages=["es"])
    assert row.translations == (("es", "un sombrero"),)
    # A language the site does not speak is refused, naming the column.
    with pytest.raises(BatchFileError, match="prompt_fr"):
        prompt_rows_parse(
            b"prompt,cohort,category,prompt_fr\na,india,food,b\n",
            filename="p.csv",
            known_cohorts=["india"],
            languages=["es"],
        )
    with pytest.raises(BatchFileError, match="prompt_es must be text"):
        prompt_rows_parse(
            b'{"prompt": "a", "cohort": "india", "category": "food", "prompt_es": 3}\n',
            filename="p.jsonl",
            known_cohorts=["india"],
            languages=["es"],
        )


def test_a_queued_batch_keeps_the_rendered_text_and_its_translation(study, variants):
    from generation.selectors import batch_rows_parse
    from generation.services import batch_queue

    rows = batch_rows_parse(
        data=b"prompt,cohort,category,prompt_es\na plate of idli,india,food,un plato de idli\n",
        filename="p.csv",
        variants=variants,
    )
    with translation.override("es"):  # a staff member working in Spanish changes nothing
        batch_queue(study=study, rows=rows, variants=variants, seeds_per_prompt=1)
    prompt = Prompt.objects.get()
    assert (prompt.text_en, prompt.text_es) == ("a plate of idli", "un plato de idli")
    with translation.override("en"):
        assert Prompt.objects.get().text == "a plate of idli"  # what the worker renders


def test_stop_pages_tell_each_kind_of_rater_how_to_come_back(study, rater_india):
    stop = reverse("ratings:stop", args=["test-study"])
    # A signed-up rater signs in again.
    client = _client(rater_india.user, "en")
    assert "sign in again with your email and password" in _page(client, stop)
    stopped = client.post(stop).content.decode()
    assert "signed out" in stopped and "sign in again with your email and password" in stopped
    assert "same link" not in stopped
    # A rater from a panel comes back by the panel's link: there is no password to sign in with.
    panel = Client()
    panel.get(reverse("ratings:start", args=["test-study"]), {"PROLIFIC_PID": "p" * 24})
    page = _page(panel, stop)
    assert "from your panel, with the same link" in page and "password" not in page
    stopped = panel.post(stop).content.decode()
    assert "from your panel, with the same link" in stopped
    # In a study with invite links, a rater with an account may also open the invite again.
    StudyInvite.objects.create(study=study)
    assert "open your invite link again" in _page(_client(rater_india.user, "en"), stop)


def test_years_lived_question_makes_sense_with_several_cultures(study, rater_india, rater_korea):
    from ratings.entry.services import rater_cohorts_set

    url = reverse("ratings:demographics", args=["test-study"])
    Study.objects.filter(pk=study.pk).update(ask_demographics=True)
    one = _page(_client(rater_india.user, "en"), url)
    assert "How many years have you lived in the culture you chose?" in one
    rater_cohorts_set(
        rater=rater_india, cohorts=list(Cohort.objects.filter(path__in=["india", "korea"]))
    )
    several = _page(_client(rater_india.user, "en"), url)
    assert "think of the one you know best" in several
    assert "You chose: India, Korea." in several
    assert "the culture you chose?" not in several
    spanish = _page(_client(rater_india.user, "es"), url)
    assert "piensa en la que mejor conoces" in spanish


def test_admin_edits_each_language_side_by_side(admin_client, study):
    page = admin_client.get(reverse("admin:ratings_study_change", args=[study.pk])).content.decode()
    for name in ("consent_text_en", "consent_text_es", "completion_text_es", "name_es"):
        assert f'name="{name}"' in page
    assert 'name="criteria-0-question_es"' in page
    cohort = Cohort.objects.get(path="india")
    page = admin_client.get(
        reverse("admin:ratings_cohort_change", args=[cohort.pk])
    ).content.decode()
    assert 'name="name_es"' in page


def test_a_study_made_while_working_in_spanish_keeps_its_texts_as_written(db):
    from ratings.studies import study_create

    with translation.override("es"):
        made = study_create(name="Made in Spanish", slug="made-es", cohort_paths=["peru:lima"])
    # No Spanish "translation" that is a copy of the text as written: nothing to go stale.
    assert Study.objects.filter(pk=made.pk).values_list("name_en", "name_es").get() == (
        "Made in Spanish",
        None,
    )
    assert set(Criterion.objects.filter(study=made).values_list("question_es", flat=True)) == {None}
    assert Cohort.objects.get(path="peru:lima").name_es is None
    assert Cohort.objects.get(path="peru:lima").name_en == "Lima"
