"""superuser_ensure: the first superuser from the environment passes Django's password validators."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chat.models import Chat
from core.accounts import SuperuserPasswordRefused, superuser_ensure

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("change-me-admin-password", "placeholder"),
        ("dev-only-password-for-admin", "placeholder"),
        ("short1!", "too short"),
        ("password123", "too common"),
        ("84736291047", "entirely numeric"),
        ("boss-admin-1", "too similar"),
    ],
)
def test_a_password_the_validators_refuse_creates_no_superuser(password, reason):
    with pytest.raises(SuperuserPasswordRefused, match=reason):
        superuser_ensure(username="boss-admin", email="boss@example.com", password=password)
    assert not get_user_model().objects.filter(username="boss-admin").exists()


def test_a_valid_password_creates_the_superuser_with_its_chat_once():
    assert superuser_ensure(username="boss", email="boss@example.com", password="Q7v-long-random-pass") is True
    user = get_user_model().objects.get(username="boss")
    assert user.is_superuser and user.is_staff and user.check_password("Q7v-long-random-pass")
    assert Chat.objects.filter(user=user).count() == 1

    assert superuser_ensure(username="boss", email="boss@example.com", password="another-long-random-pass") is False
    user.refresh_from_db()
    assert user.check_password("Q7v-long-random-pass")  # a re-run leaves the password alone


def test_command_reads_the_environment_and_names_the_key_it_refuses(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "boss")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "boss@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "change-me-admin-password")
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD is a placeholder"):
        call_command("ensure_superuser")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Q7v-long-random-pass")
    call_command("ensure_superuser")
    assert get_user_model().objects.get(username="boss").is_superuser


def test_command_does_nothing_without_the_keys(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_superuser")
    assert not get_user_model().objects.filter(is_superuser=True).exists()
