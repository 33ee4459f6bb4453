"""The API under schemathesis: no request it can build from the OpenAPI schema gets a 5xx.

Generated from the schema the server publishes at /api/schema/ and sent through the WSGI
application, against a study with votes and a score run, both with a researcher's token and
with none; a generated slug, table or format that does not exist must be a 4xx, never a 500.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from webapp.wsgi import application

pytest_plugins = ["tests.test_api_permissions"]  # the scored study and its researcher


# The WSGI handler closes the connection after each request, as a server does: each request
# commits on its own, so the test database is emptied by truncation, not rolled back.
@pytest.mark.django_db(transaction=True)
def test_no_generated_request_gets_a_server_error(scored_study, researcher):
    key, _ = Token.objects.get_or_create(user=researcher)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8  # every documented endpoint is tried
    statuses: list[tuple[bool, int]] = []

    for operation in operations:
        # Not schemathesis' pytest plugin: it does not run under pytest 9. The same strategy,
        # driven by Hypothesis here.
        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def call(case) -> None:
            for headers in ({"Authorization": f"Token {key.key}"}, {}):
                response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
                statuses.append((bool(headers), response.status_code))

        call()

    # Not vacuous: the token read real data, and the anonymous calls were refused.
    assert sum(status == 200 for signed, status in statuses if signed) >= len(operations)
    assert {status for signed, status in statuses if not signed} <= {401, 404}  # 404: no such URL
    assert any(status == 404 for signed, status in statuses if signed)
