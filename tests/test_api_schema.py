"""The OpenAPI schema at /api/schema/ describes the researchers' API and validates."""

from __future__ import annotations

import yaml
from django.test import Client
from drf_spectacular.validation import validate_schema

from ratings.exports.tables import FORMATS, TABLES


def _schema() -> dict:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_served_and_valid_openapi(db):
    schema = _schema()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Polyphony API"
    validate_schema(schema)  # raises on anything that is not OpenAPI 3
    # The YAML rendering a browser gets by default says the same.
    yaml_schema = yaml.safe_load(Client().get("/api/schema/").content)
    assert yaml_schema["paths"].keys() == schema["paths"].keys()


def test_the_schema_describes_every_research_endpoint(db):
    paths = _schema()["paths"]
    base = "/api/v1/studies/"
    for path in [
        base,
        base + "{slug}/",
        base + "{slug}/scores/",
        base + "{slug}/splits/",
        base + "{slug}/exports/{table}.{fmt}",
        base + "{slug}/exports/{table}/card.md",
    ]:
        assert "get" in paths[path], path
    export = paths[base + "{slug}/exports/{table}.{fmt}"]["get"]
    parameters = {parameter["name"]: parameter for parameter in export["parameters"]}
    assert sorted(parameters["table"]["schema"]["enum"]) == sorted(TABLES)
    assert sorted(parameters["fmt"]["schema"]["enum"]) == sorted(FORMATS)
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv",
        "application/x-ndjson",
        "application/vnd.apache.parquet",
    }
    scores = paths[base + "{slug}/scores/"]["get"]["responses"]["200"]["content"]
    ref = scores["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    components = _schema()["components"]
    row_ref = components["schemas"][ref]["properties"]["scores"]["items"]["$ref"]
    row = components["schemas"][row_ref.rsplit("/", 1)[-1]]["properties"]
    assert {"cohort", "label", "suppressed", "count_a", "gai_q"} <= row.keys()
    assert "tokenAuth" in components["securitySchemes"]


def _docs_page_and_script() -> tuple[str, str]:
    # The split view: the page loads its script from this server (no inline script, which
    # the Content-Security-Policy refuses), and the script names the schema.
    page = Client().get("/api/docs/")
    assert page.status_code == 200
    script = Client().get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    return page.content.decode(), script.content.decode()


def test_the_docs_page_points_at_the_schema(db):
    page, script = _docs_page_and_script()
    assert "/api/schema/" in script
    assert 'src="/api/docs/?script=' in page or "?script" in page


def test_the_docs_page_loads_swagger_ui_from_this_server_not_a_cdn(db, settings):
    page, script = _docs_page_and_script()
    assert "/api/schema/" in script
    assert "swagger-ui" in page
    assert "cdn." not in page and "unpkg" not in page
    assert settings.STATIC_URL + "drf_spectacular_sidecar/" in page


def test_the_schema_generates_without_a_warning(db, tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "s.yaml"))
    assert "batches_list" in (tmp_path / "s.yaml").read_text()
