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


# A study written in its own language: a text missing in the rater's language shows in the
# study's language, before the site's default.

SPANISH_QUESTIONS = {
    "alignment": "¿Qué imagen se ajusta mejor a la descripción?",
    "representation": "¿Qué imagen representa mejor {culture}?",
    "stereotype": "¿Qué imagen es más estereotipada?",
    "offensiveness": "¿Qué imagen te resulta más ofensiva?",
}


@pytest.fixture
def spanish(study, pair_factory):
    """The test study written in Spanish alone: no English text, nor any as first written.

    With the field's own column empty too, only the study's language can answer a rater whose
    language has no text.
    """
    Study.objects.rewrite(False).filter(pk=study.pk).update(
        language="es",
        name="",
        name_en=None,
        name_es="Estudio en español",
        consent_text="",
        consent_text_en=None,
        consent_text_es="Puedes parar cuando quieras.",
        completion_text_es="¡Gracias por participar!",
        pairs_per_rater=5,
        attention_check_rate=0,
        min_seconds_per_pair=0,
    )
    for key, question in SPANISH_QUESTIONS.items():
        Criterion.objects.rewrite(False).filter(study=study, key=key).update(
            question="", question_en=None, question_es=question
        )
    # A cohort named in Spanish only, and one with an English name of its own.
    Cohort.objects.rewrite(False).filter(path="india").update(
        name="", name_en=None, name_es="la India"
    )
    for _ in range(3):
        pair = pair_factory()
        pair.prompt.text_es = pair.prompt.text.replace("a plate of idli", "un plato de idli")
        pair.prompt.save(update_fields=["text_es"])
    return study


def _rate_and_follow(client: Client) -> tuple[str, dict]:
    """Open the rating page, vote on its pair through rate.js's JSON, return both answers."""
    page = _page(client, RATE)
    response = client.post(
        VOTE,
        {"assignment": served_assignment_id(page), **form_answers(SCREEN_ANSWERS)},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content
    return page, json.loads(response.content)


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_study_written_in_spanish_shows_in_spanish_to_every_rater(
    spanish, rater_india, outsider, language
):
    # Consent and cohorts, read through the models.
    client = _client(outsider, language)
    consent = _page(client, reverse("ratings:consent", args=["test-study"]))
    assert "Puedes parar cuando quieras." in consent and "Estudio en español" in consent
    client.post(reverse("ratings:consent", args=["test-study"]), {"decision": "accept"})
    cohorts = _page(client, reverse("ratings:cohorts", args=["test-study"]))
    assert "la India" in cohorts and "Korea" in cohorts  # Korea's own name where it has one
    # The rating page and the next pair as JSON, read by the hand-written statements.
    page, following = _rate_and_follow(_client(rater_india.user, language))
    assert "Estudio en español" in page
    assert "¿Qué imagen representa mejor la India?" in page
    expected = [
        question.replace("{culture}", "la India") for question in SPANISH_QUESTIONS.values()
    ]
    assert [question["text"] for question in following["questions"]] == expected
    # The prompt: in Spanish to a Spanish rater, as rendered to anyone else.
    if language == "es":
        assert following["prompt"].startswith("un plato de idli")
        assert following["prompt_original"].startswith("a plate of idli")
    else:
        assert following["prompt"].startswith("a plate of idli")
        assert following["prompt_original"] == ""
    Study.objects.filter(pk=spanish.pk).update(pairs_per_rater=1)
    done = _page(
        _client(rater_india.user, language), reverse("ratings:complete", args=["test-study"])
    )
    assert "¡Gracias por participar!" in done


def test_an_english_study_falls_back_to_english_where_spanish_is_missing(translated, rater_india):
    # The statements of the rating page read the study's language from its row.
    _, following = _rate_and_follow(_client(rater_india.user, "es"))
    texts = {question["key"]: question["text"] for question in following["questions"]}
    assert texts["alignment"] == "¿Qué imagen muestra mejor la descripción?"
    assert texts["offensiveness"] == "Which image would upset people in la India?"
    assert texts["stereotype"] == "¿Qué imagen es más estereotipada?"  # the catalogue's


def test_texts_fall_back_to_the_studys_language_before_the_sites(spanish):
    study = Study.objects.get(pk=spanish.pk)
    with translation.override("en"):
        assert study.name == "Estudio en español"
        assert study.consent_text == "Puedes parar cuando quieras."
    # An English text, where the study has one, is still what an English rater reads.
    Study.objects.filter(pk=spanish.pk).update(name_en="Study in Spanish")
    with translation.override("en"):
        assert Study.objects.get(pk=spanish.pk).name == "Study in Spanish"
    with translation.override("es"):
        assert Study.objects.get(pk=spanish.pk).name == "Estudio en español"


# The optional questions about the rater, in the study's own words.

DEMOGRAPHICS = reverse("ratings:demographics", args=["test-study"])


@pytest.fixture
def worded(study):
    Study.objects.filter(pk=study.pk).update(
        ask_demographics=True,
        demographics_intro_en="We ask so that we can describe who rated.",
        demographics_intro_es="Preguntamos para describir quién valoró.",
        age_band_question_en="How old are you?",
        age_band_question_es="¿Cuántos años tienes?",
        years_lived_question_en="How long have you lived there?",
        # No Spanish wording for this one: the study's own, in English, as for any text.
    )
    return study


def test_demographic_questions_in_the_studys_words_in_each_language(worded, rater_india):
    english = _page(_client(rater_india.user, "en"), DEMOGRAPHICS)
    assert "We ask so that we can describe who rated." in english
    assert "How old are you?" in english and "Your age" not in english
    assert "How long have you lived there?" in english
    assert "Languages you speak" in english  # left blank: the built-in wording
    spanish = _page(_client(rater_india.user, "es"), DEMOGRAPHICS)
    assert "Preguntamos para describir quién valoró." in spanish
    assert "¿Cuántos años tienes?" in spanish and "Tu edad" not in spanish
    assert "How long have you lived there?" in spanish
    assert "Idiomas que hablas" in spanish


def test_blank_demographic_wording_keeps_the_built_in_questions(study, rater_india):
    Study.objects.filter(pk=study.pk).update(ask_demographics=True)
    spanish = _page(_client(rater_india.user, "es"), DEMOGRAPHICS)
    assert "Tu edad" in spanish and "Idiomas que hablas" in spanish
    assert "¿Cuántos años has vivido en la cultura que elegiste?" in spanish
    assert 'class="intro"' not in spanish


def test_own_years_lived_wording_still_names_the_cultures_chosen(worded, rater_india):
    from ratings.entry.services import rater_cohorts_set

    rater_cohorts_set(
        rater=rater_india, cohorts=list(Cohort.objects.filter(path__in=["india", "korea"]))
    )
    page = _page(_client(rater_india.user, "en"), DEMOGRAPHICS)
    assert "How long have you lived there?" in page
    assert "You chose: India, Korea." in page
    assert "think of the one you know best" not in page


def test_admin_shows_the_demographic_wording_beside_the_consent(admin_client, study):
    page = admin_client.get(reverse("admin:ratings_study_change", args=[study.pk])).content.decode()
    consent = page.index('name="consent_text_es"')
    for name in ("demographics_intro_es", "age_band_question_en", "years_lived_question_es"):
        assert 0 < page.index(f'name="{name}"') - consent < 20_000
    assert 'name="language"' in page


def _study_post(admin_client, **texts: str) -> tuple:
    """Post the admin's add form for a study written in Spanish, with `texts` and one question."""
    page = admin_client.get(reverse("admin:ratings_study_add"))
    form = page.context["adminform"].form
    # Every setting at its default, as the empty form shows it.
    data = {
        name: form[name].initial
        for name in form.fields
        if form[name].initial not in (None, "") and not isinstance(form[name].initial, list)
    }
    data.update(
        {
            "slug": "estudio",
            "language": "es",
            "criteria-TOTAL_FORMS": "1",
            "criteria-INITIAL_FORMS": "0",
            "criteria-0-key": "alignment",
            "criteria-0-position": "0",
            "criteria-0-question_es": "¿Qué imagen se ajusta mejor a la descripción?",
            "invites-TOTAL_FORMS": "0",
            "invites-INITIAL_FORMS": "0",
            "grants-TOTAL_FORMS": "0",
            "grants-INITIAL_FORMS": "0",
            **texts,
        }
    )
    return admin_client.post(reverse("admin:ratings_study_add"), data)


def test_admin_saves_a_study_written_in_spanish_alone(admin_client, db):
    response = _study_post(
        admin_client, name_es="Estudio en español", consent_text_es="Puedes parar."
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    study = Study.objects.get(slug="estudio")
    assert (study.language, study.name_en, study.name_es) == ("es", None, "Estudio en español")
    assert study.criteria.get().question_es == "¿Qué imagen se ajusta mejor a la descripción?"
    with translation.override("en"):
        assert study.name == "Estudio en español" and study.consent_text == "Puedes parar."


def test_admin_refuses_a_study_without_a_name_in_any_language(admin_client, db):
    response = _study_post(admin_client, consent_text_es="Puedes parar.")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["name_es"] == ["Write this in one language at least."]
    assert not Study.objects.filter(slug="estudio").exists()


def test_a_study_made_in_spanish_keeps_its_texts_in_spanish_alone(db):
    from ratings.studies import study_create

    made = study_create(
        name="Hecho en español", slug="made-es", language="es", consent_text="Puedes parar."
    )
    assert Study.objects.filter(pk=made.pk).values_list("name_en", "name_es").get() == (
        None,
        "Hecho en español",
    )
    with translation.override("en"):
        assert Study.objects.get(pk=made.pk).consent_text == "Puedes parar."
    # The default questions are the interface's, written in its default language.
    assert Criterion.objects.filter(study=made).exclude(question_en=None).count() == 4


def test_admin_saves_a_cohort_named_in_spanish_alone(admin_client, db):
    data = {"path": "peru", "name_es": "Perú"}
    response = admin_client.post(reverse("admin:ratings_cohort_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Cohort.objects.filter(path="peru").values_list("name_en", "name_es").get() == (
        None,
        "Perú",
    )
    refused = admin_client.post(reverse("admin:ratings_cohort_add"), {"path": "chile"})
    assert refused.context["adminform"].form.errors["name_en"] == [
        "Write this in one language at least."
    ]


# A third language: one translation file.


def test_a_compiled_catalogue_in_locale_adds_an_interface_language(tmp_path):
    from webapp.languages import catalogue_languages

    for code, compiled in (("fr", True), ("pt_BR", True), ("es", True), ("de", False)):
        folder = tmp_path / code / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / ("django.mo" if compiled else "django.po")).write_bytes(b"")
    # Each named in its own language; Spanish has text columns already; German is not compiled.
    assert catalogue_languages(tmp_path, known={"en", "es"}) == [
        ("fr", "français"),
        ("pt-br", "Português Brasileiro"),
    ]


def test_the_shipped_languages_are_the_catalogues_in_locale(settings):
    assert [code for code, _ in settings.LANGUAGES] == ["en", "es"]
    assert settings.MODELTRANSLATION_LANGUAGES == ("en", "es")


def test_a_language_without_text_columns_reads_the_study_in_its_own_language(
    spanish, rater_india, outsider, settings
):
    # As if locale/fr held a catalogue: the interface speaks French, the study's texts have no
    # French columns, so a French rater reads them in the study's language (Spanish here).
    settings.LANGUAGES = [*settings.TEXT_LANGUAGES, ("fr", "français")]
    newcomer = _client(outsider, "fr")
    consent = _page(newcomer, reverse("ratings:consent", args=["test-study"]))
    assert '<option value="fr" lang="fr"' in consent and ">Français</option>" in consent
    assert "Puedes parar cuando quieras." in consent
    page, following = _rate_and_follow(_client(rater_india.user, "fr"))
    assert '<html lang="fr">' in page
    assert "Estudio en español" in page
    assert "¿Qué imagen representa mejor la India?" in page
    questions = [question["text"] for question in following["questions"]]
    assert "¿Qué imagen representa mejor la India?" in questions
    assert following["prompt"].startswith("a plate of idli")  # the prompt as rendered
    with translation.override("fr"):
        assert Study.objects.get(pk=spanish.pk).consent_text == "Puedes parar cuando quieras."
