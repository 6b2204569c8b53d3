"""Schemathesis against the API's own OpenAPI schema: generated requests, bounded, never a 500, answers as documented."""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pru_app.wsgi import application

pytestmark = pytest.mark.django_db

# Bounded: a few dozen requests per operation keep this under ~15 s.
MAX_EXAMPLES = 25


# Read once at collection, from the app itself (the schema view touches no database).
# Eager, not schemathesis.pytest.from_fixture: its lazy loader sets a private pytest
# attribute that pytest 9 no longer has.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@pytest.fixture(autouse=True)
def requests_share_the_test_connection(db):
    """Requests go straight into the WSGI handler, on this test's connection and transaction.

    As Django's test client does, keep the handler from closing that connection after each.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token_header(make_user, stored_image, send, make_image):
    """A recipient whose chat holds messages with a stored, a pending and a deleted image."""
    from rest_framework.authtoken.models import Token

    user = make_user(username="fuzzed")
    for image in (stored_image(), stored_image(), make_image(status="pending")):
        send(user.chat, image=image)
    doomed = make_image(status="pending")
    send(user.chat, image=doomed)
    doomed.delete()
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_generated_request_as_its_schema_says(case, token_header):
    case.call_and_validate(
        headers=token_header,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )


@schema.parametrize()
@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_without_credentials_every_operation_is_a_documented_401(case):
    response = case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance])
    # A path no route matches (a non-integer image id) is not found before anyone is asked who they are.
    unroutable = not str(case.path_parameters.get("image_id", 1)).isdigit() if case.path_parameters else False
    assert response.status_code == (404 if unroutable else 401)
