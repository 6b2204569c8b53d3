"""API requests with a token skip the user and messages middleware and never load a session; everything else keeps them."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def test_a_token_request_reads_as_the_tokens_user_whatever_session_it_carries(make_user, make_image):
    reader, staff = make_user(username="reader"), make_user(username="staff", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    token = Token.objects.create(user=reader)
    response = client.get(reverse("api:chat"), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200
    assert response.json()["id"] == reader.chat.pk
    # No session was read or written for it: never accessed, no cookie set, no Vary: Cookie.
    assert not response.wsgi_request.session.accessed and not response.wsgi_request.session.modified
    assert "Vary" not in response and not response.cookies
    # A POST with the token needs no CSRF token (DRF's token requests never did).
    response = client.post(
        reverse("api:chat_read"),
        {"up_to_id": 1},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert response.status_code == 200


def test_a_bad_token_is_refused_even_with_a_valid_session(make_user):
    staff = make_user(username="staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    response = client.get(reverse("api:chat"), HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 401


def test_a_session_request_to_the_api_still_needs_its_csrf_token(make_user):
    reader = make_user(username="reader")
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)
    assert client.get(reverse("api:chat")).status_code == 200
    response = client.post(reverse("api:chat_read"), {"up_to_id": 1}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_a_token_header_outside_the_api_changes_nothing(make_user):
    """The admin and the page keep their session and CSRF checks whatever Authorization says."""
    staff = make_user(username="staff", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get("/admin/", HTTP_AUTHORIZATION="Token anything").status_code == 200
    response = client.post("/admin/logout/", HTTP_AUTHORIZATION="Token anything")
    assert response.status_code == 403
