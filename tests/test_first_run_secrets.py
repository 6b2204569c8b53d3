"""First run: bin/init-env generates every secret; nothing copied from the examples or shaped like a placeholder starts."""

import os
import re
import stat
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password

from chat.tests.subprocess_helpers import run_manage
from core.secret_values import is_placeholder, placeholder_keys
from tests.deploy_files import ENV_EXAMPLE, MINIO_ENV_EXAMPLE, PROJECT_ROOT, env_file_keys

INIT_ENV = PROJECT_ROOT / "bin" / "init-env"
# Names of keys that hold a secret; AWS_ACCESS_KEY_ID is a user name, not one.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY$|^SECRET_KEY$)")
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "pru_app.settings",
    "DJANGO_ALLOWED_HOSTS": "pru.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
}
# The value .env.example carried before bin/init-env: 63 characters that `check --deploy` accepted.
OLD_EXAMPLE_KEY = "dev-only-insecure-key-change-me-in-production-0123456789abcdef"


def _secret_keys(path) -> dict[str, str]:
    return {
        key: value for key, value in env_file_keys(path).items() if SECRET_NAME.search(key) and not key.endswith("_ID")
    }


def _init_env(directory, *args) -> subprocess.CompletedProcess:
    # The system's python3, as a person runs it before any virtualenv exists.
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    return subprocess.run(
        [python, str(INIT_ENV), "--directory", str(directory), *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("example", [ENV_EXAMPLE, MINIO_ENV_EXAMPLE], ids=lambda path: path.name)
def test_example_files_hold_no_value_that_works_as_a_secret(example):
    secrets = _secret_keys(example)
    assert secrets, "the scan found no secret keys"
    usable = {key: value for key, value in secrets.items() if value and not is_placeholder(value)}
    assert usable == {}


def test_init_env_writes_both_files_private_with_every_placeholder_replaced(tmp_path):
    result = _init_env(tmp_path)
    assert result.returncode == 0, result.stderr
    for name, example in ((".env", ENV_EXAMPLE), (".env.minio", MINIO_ENV_EXAMPLE)):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        written, examples = env_file_keys(path), env_file_keys(example)
        assert set(written) == set(examples), name  # every key kept, none added
        for key, value in _secret_keys(example).items():
            if value:  # an empty example value stays empty (DATABASE_PASSWORD: compose sets it)
                assert written[key] != value and not is_placeholder(written[key]), key
                assert len(written[key]) >= 24, key
        for key, value in written.items():
            assert not is_placeholder(value), key
    minio = env_file_keys(tmp_path / ".env.minio")
    assert minio["MINIO_ROOT_USER"] != env_file_keys(MINIO_ENV_EXAMPLE)["MINIO_ROOT_USER"]


def test_init_env_prints_the_superuser_password_once_and_it_passes_the_validators(tmp_path):
    result = _init_env(tmp_path)
    password = env_file_keys(tmp_path / ".env")["DJANGO_SUPERUSER_PASSWORD"]
    assert result.stdout.count(password) == 1
    assert password not in result.stderr
    # No other secret is echoed.
    for key in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert env_file_keys(tmp_path / ".env")[key] not in result.stdout
    # The test settings have the production AUTH_PASSWORD_VALIDATORS.
    validate_password(password, User(username="admin", email="admin@example.com"))


def test_init_env_makes_new_secrets_each_time_and_never_overwrites_without_force(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert _init_env(first).returncode == 0 and _init_env(second).returncode == 0
    one, two = env_file_keys(first / ".env"), env_file_keys(second / ".env")
    assert one["DJANGO_SECRET_KEY"] != two["DJANGO_SECRET_KEY"]
    assert one["POSTGRES_PASSWORD"] != two["POSTGRES_PASSWORD"]

    before = (first / ".env").read_text()
    again = _init_env(first)
    assert again.returncode == 1 and "exist already" in again.stderr
    assert (first / ".env").read_text() == before
    assert _init_env(first, "--force").returncode == 0
    assert (first / ".env").read_text() != before


def test_settings_refuse_a_copy_of_env_example_naming_the_keys():
    env = env_file_keys(ENV_EXAMPLE) | {"DJANGO_SETTINGS_MODULE": "pru_app.settings"}
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
    assert "bin/init-env" in result.stderr


def test_production_settings_refuse_each_placeholder_secret_naming_its_key():
    env = PRODUCTION_ENV | {
        "DJANGO_SECRET_KEY": OLD_EXAMPLE_KEY,
        "DJANGO_SECRET_KEY_FALLBACKS": "old-" + "z" * 50 + ",Dev-Only-old-key",
        "AWS_SECRET_ACCESS_KEY": env_file_keys(ENV_EXAMPLE)["AWS_SECRET_ACCESS_KEY"],
        "DATABASE_URL": "postgres://pru_app:change-me-postgres-password@db:5432/pru_app",
    }
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    named = result.stderr.rpartition("ImproperlyConfigured: ")[2].partition(": a value copied")[0]
    assert named.split(", ") == [
        "DJANGO_SECRET_KEY",
        "DJANGO_SECRET_KEY_FALLBACKS (2)",
        "DATABASE_URL (its password)",
        "AWS_SECRET_ACCESS_KEY",
    ], result.stderr[-2000:]


def test_production_settings_refuse_the_example_database_password_given_as_a_part():
    env = PRODUCTION_ENV | {
        "DJANGO_SECRET_KEY": "k" * 60,
        "DATABASE_URL": "",
        "DATABASE_HOST": "db",
        "DATABASE_PASSWORD": env_file_keys(ENV_EXAMPLE)["POSTGRES_PASSWORD"],
    }
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_PASSWORD: a value copied from .env.example" in result.stderr


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("change-me-anything", True),
        ("Change-Me-" + "x" * 60, True),
        ("  dev-only-key", True),
        ("DEV-ONLY", True),
        ("insecure-key", True),
        ("the-example-value", True),
        ("a-real-random-value", False),
        ("", False),
        ("my-change-me-is-inside", False),
    ],
)
def test_the_placeholder_rule(value, refused):
    keys = placeholder_keys({"KEY": value}, examples={"KEY": "the-example-value"})
    assert keys == (["KEY"] if refused else [])


def test_debug_mode_still_runs_with_the_example_values():
    env = env_file_keys(ENV_EXAMPLE) | {"DJANGO_SETTINGS_MODULE": "pru_app.settings", "DJANGO_DEBUG": "true"}
    result = run_manage("check", env_overrides=env)
    assert result.returncode == 0, result.stderr


def test_a_secret_starting_with_a_dollar_is_taken_as_it_is():
    # django-environ would read "$NAME" as a reference to another variable.
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        env_overrides=PRODUCTION_ENV | {"DJANGO_SECRET_KEY": "$HOME-and-a-long-random-tail-" + "q" * 30},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("$HOME-and-a-long-random-tail-" + "q" * 30)


@pytest.mark.parametrize("key", ["MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"])
def test_minio_setup_refuses_a_placeholder_before_touching_minio(key):
    env = {
        "PATH": "/usr/bin:/bin",
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "a-real-root-password",
        "AWS_STORAGE_BUCKET_NAME": "bucket",
        "AWS_ACCESS_KEY_ID": "pru-app",
        "AWS_SECRET_ACCESS_KEY": "a-real-app-secret",
    }
    env[key] = env_file_keys(MINIO_ENV_EXAMPLE).get(key) or env_file_keys(ENV_EXAMPLE)[key]
    # MinIO's image runs it with bash; `mc` is not here, so a script that got past the check says so.
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "deploy/compose/minio/setup")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert f"minio-setup: {key} is a placeholder" in result.stderr
    assert "mc" not in result.stderr.replace("minio-setup", "")


def test_check_deploy_passes_with_what_init_env_writes_once_https_is_on(tmp_path):
    """The settings take what init-env writes, and CI holds every change to it: with .env's localhost-only HTTP lines deleted."""
    _init_env(tmp_path)
    env = {
        key: value
        for key, value in env_file_keys(tmp_path / ".env").items()
        if value and not key.startswith(("DJANGO_SECURE_", "DJANGO_SESSION_COOKIE_", "DJANGO_CSRF_COOKIE_"))
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "pru_app.settings",
        "DJANGO_ALLOWED_HOSTS": "pru.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://pru.example.com",
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_env_sets_every_key_compose_requires(tmp_path):
    _init_env(tmp_path)
    written = env_file_keys(tmp_path / ".env")
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", (PROJECT_ROOT / "docker-compose.yml").read_text()))
    assert {"POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= required
    assert {key for key in required if not written.get(key)} == set()
