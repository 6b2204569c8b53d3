"""API tokens are issued in the admin and by DRF's drf_create_token command, and work at once."""

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _works(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(reverse("api:chat")).status_code == 200


def test_staff_issue_a_token_in_the_admin_by_searching_for_the_user(admin_client, make_user):
    user = make_user(username="recipient")
    add_url = reverse("admin:authtoken_tokenproxy_add")
    form = admin_client.get(add_url).content.decode()
    # Users are searched (autocomplete), never listed in a <select> of every account.
    assert "admin-autocomplete" in form and f'value="{user.pk}"' not in form
    response = admin_client.post(add_url, {"user": user.pk})
    assert response.status_code == 302
    token = Token.objects.get(user=user)
    assert _works(token.key)
    listing = admin_client.get(reverse("admin:authtoken_tokenproxy_changelist"))
    assert listing.status_code == 200 and token.key in listing.content.decode()


def test_the_command_issues_a_token_and_resets_it_on_request(make_user, capsys):
    user = make_user(username="scripted")
    call_command("drf_create_token", "scripted")
    first = Token.objects.get(user=user).key
    assert first in capsys.readouterr().out and _works(first)
    call_command("drf_create_token", "scripted", "--reset")
    second = Token.objects.get(user=user).key
    assert second != first and _works(second) and not _works(first)
