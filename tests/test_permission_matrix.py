"""The permission matrix (issue 14): every URL pattern of the site, asked for one study's data by
everyone who must not have it.

Who asks: an anonymous visitor; a rater of the study (who may use its rating pages, nothing
else); a researcher granted another study, signed in and by API token; staff without any
permission or grant. Every pattern is resolved from the URL configuration, so a new page is in
the matrix the day it is added. Each is fetched with GET and sent an empty POST; none may answer
with the study's data (its prompts, a stored file, a variant, its results), none may fail
with a 5xx, and no POST may change a row.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from generation.models import Image, ModelVariant, PromptBatch
from ratings.access import study_grant
from ratings.models import Pair, Participation, Score, StudyInvite, Vote
from ratings.studies import study_create

pytest_plugins = ["tests.test_api_permissions"]  # the scored study, with votes and scores

# In a prompt and a variant's name: only the rater sees the prompt, on the rating pages; no one
# asking here ever sees the variant. (The study's name is not secret: the home page lists
# studies open to sign-ups.)
MARK = "zebramark"

# Pages anyone may open (sign-in, sign-up, the language switch, the health check, the API's
# schema); they are still searched for the study's data.
PUBLIC = {
    "login",
    "logout",
    "signup",
    "signup_finish",
    "set_language",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "healthz",
    "favicon",
    "api_schema",
    "api_docs",
    "ratings:home",
    "ratings:start",
    "ratings:invite",
    # Where a rater lands after stopping, signed out: it says how to come back, nothing else.
    "ratings:stop",
    "admin:login",
    "admin:logout",
}
# A rater's own pages of the study they take part in.
RATER_PAGES = {
    "ratings:consent",
    "ratings:panel_switch",
    "ratings:cohorts",
    "ratings:demographics",
    "ratings:complete",
    "ratings:stop",
    "ratings:rate",
    "ratings:vote",
    "ratings:skip",
    "ratings:image",
}
# The admin lets any staff member in to its index and their own password; it shows them no
# model they have no permission for.
ADMIN_OPEN_TO_STAFF = {
    "admin:index",
    "admin:password_change",
    "admin:password_change_done",
    "admin:jsi18n",
    "admin:autocomplete",
}
# Lists of what the asker may read: open to anyone signed in, and must not name the study.
OWN_LISTS = {"ratings:study_list", "ratings_api:study_list"}
SIGNING_OUT = {"logout", "admin:logout", "ratings:stop"}
REFUSED = {301, 302, 400, 401, 403, 404, 405, 409, 410}


@dataclass(frozen=True)
class Route:
    name: str
    url: str


def _patterns(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, object]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
            yield from _patterns(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), namespace + (pattern.name or ""), pattern


def _admin_object_id(name: str, study) -> str:
    # admin:<app>_<model>_<view>: an object of that model, the study's where it has one.
    _, rest = name.split(":", 1)
    for model in apps.get_models():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if rest.startswith(prefix):
            mine = {
                "study": lambda m: m.objects.filter(pk=study.pk),
                "promptbatch": lambda m: m.objects.filter(study=study),
                "participation": lambda m: m.objects.filter(study=study),
            }.get(model._meta.model_name, lambda m: m.objects.all())(model)
            first = mine.order_by("pk").first() or model.objects.order_by("pk").first()
            return str(first.pk if first else 1)
    return "1"


def _routes(study, batch: PromptBatch, score: Score, image: Image):
    values = {
        "slug": study.slug,
        "pk": str(batch.pk),
        "score_id": str(score.pk),
        "table": "votes",
        "fmt": "csv",
        "path": image.file.name,
        "app_label": "ratings",
    }
    routes = []
    for pattern, name, _ in _patterns(get_resolver().url_patterns):
        url = "/" + pattern.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")
        for part in list(_parts(url)):
            _, _, key = part.strip("<>").rpartition(":")
            if key == "object_id":
                value = _admin_object_id(name, study)
            elif key in ("token", "uidb64", "content_type_id"):
                value = secrets.token_urlsafe(8) if key != "content_type_id" else "1"
            else:
                value = values.get(key, "1")
            url = url.replace(part, value)
        if "(?P<" in url or "(" in url:  # the admin's regex patterns (app index): by hand
            url = "/admin/ratings/"
        routes.append(Route(name, url))
    return routes


def _parts(url: str) -> list[str]:
    parts, at = [], 0
    while (start := url.find("<", at)) != -1:
        end = url.index(">", start)
        parts.append(url[start : end + 1])
        at = end + 1
    return parts


def _body(response) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)
    return response.content


def _rows() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Vote, Pair, Participation, PromptBatch, Image, ModelVariant, User)
    }


@pytest.fixture
def matrix(scored_study, pair_factory, researcher):
    study = scored_study
    # Closed: only its raters (by invite or panel link) come in, not any signed-in user.
    type(study).objects.filter(pk=study.pk).update(open_to_signups=False)
    pair = pair_factory(text=f"a {MARK} festival")
    batch = pair.image_a.prompt.batch
    ModelVariant.objects.filter(pk=pair.image_a.variant_id).update(name=f"{MARK}-variant")
    from ratings.results.services import scores_compute

    scores_compute(study=study)
    score = Score.objects.filter(run__study=study).first()
    # The study has an invite; the matrix does not hold it (one who does may join: by design).
    StudyInvite.objects.create(study=study, max_uses=5)

    other = study_create(name="Other study", slug="other-study")
    other_researcher = User.objects.create_user(username="olga", password="x-olga")
    study_grant(study=other, user=other_researcher)
    staff = User.objects.create_user(username="stan", password="x-stan", is_staff=True)
    from tests.conftest import _rater

    rater = _rater("rita", "india")
    askers = {
        "anonymous": Client(),
        "rater": Client(),
        "researcher of another study": Client(),
        "token of another study": Client(
            HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_researcher).key}"
        ),
        "staff without permissions": Client(),
    }
    askers["rater"].force_login(rater.user)
    askers["researcher of another study"].force_login(other_researcher)
    askers["staff without permissions"].force_login(staff)
    return _routes(study, batch, score, pair.image_a), askers


def _allowed(asker: str, route: Route) -> bool:
    if route.name in PUBLIC:
        return True
    if asker == "rater" and route.name in RATER_PAGES:
        return True
    if route.name in OWN_LISTS and asker != "anonymous":
        return True
    return asker == "staff without permissions" and route.name in ADMIN_OPEN_TO_STAFF


def test_no_one_without_a_grant_gets_a_studys_data_from_any_url(matrix):
    routes, askers = matrix
    assert len(routes) >= 140  # every pattern, the admin's included
    before = _rows()
    seen: dict[str, set[int]] = {}
    for asker, client in askers.items():
        for route in routes:
            for method in ("get", "post"):
                if route.name in SIGNING_OUT and method == "post":
                    continue  # signing out is not a refusal to test, and would end the matrix
                response = getattr(client, method)(route.url)
                where = f"{asker}: {method.upper()} {route.url} ({route.name})"
                assert response.status_code < 500, where
                body = _body(response)
                if not (asker == "rater" and route.name in RATER_PAGES):
                    assert MARK.encode() not in body.lower(), where
                if route.name in OWN_LISTS:
                    assert b"test-study" not in body, where
                assert route.url.encode() not in body or route.name != "media", where
                if not _allowed(asker, route):
                    assert response.status_code in REFUSED, (where, response.status_code)
                    if response.status_code in (301, 302):
                        # Only ever to a sign-in page or a page of this site, never elsewhere.
                        assert response["Location"].startswith("/"), where
                seen.setdefault(asker, set()).add(response.status_code)
    assert _rows() == before  # no POST changed a row
    assert all(statuses & {302, 401, 403, 404} for statuses in seen.values())


def test_stored_files_go_to_those_granted_their_study_and_to_staff_who_view_batches(
    pair_factory, researcher
):
    from django.contrib.auth.models import Permission

    name = pair_factory().image_a.file.name
    url = f"/media/{name}"
    granted = Client()
    granted.force_login(researcher)
    assert granted.get(url).status_code == 200
    batch_staff = User.objects.create_user(username="bea", password="x-bea", is_staff=True)
    batch_staff.user_permissions.add(Permission.objects.get(codename="view_promptbatch"))
    viewer = Client()
    viewer.force_login(batch_staff)
    assert viewer.get(url).status_code == 200
    # A granted researcher asking for a file of no study of theirs: the same 404 as for none.
    other = study_create(name="Elsewhere", slug="elsewhere")
    from ratings.models import StudyGrant

    StudyGrant.objects.filter(user=researcher).update(study=other)
    assert granted.get(url).status_code == 404
    assert granted.get("/media/images/no-such-file.png").status_code == 404
