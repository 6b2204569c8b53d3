"""deploy/compose/init/start (compose `init`): refuses placeholder secrets by name; the env superuser passes the validators."""

import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.deploy_files import ENV_EXAMPLE, PROJECT_ROOT, env_file_keys
from tests.stack_support import clean_environment, stack_database

INIT = PROJECT_ROOT / "deploy" / "compose" / "init" / "start"
GOOD_SECRETS = {
    "DJANGO_SECRET_KEY": "init-test-" + "r4nd0m" * 10,
    "AWS_SECRET_ACCESS_KEY": "init-test-storage-secret-value",
}


@pytest.fixture(scope="module")
def database_url():
    with stack_database("init") as url:
        yield url


def _run_init(database_url, **overrides) -> subprocess.CompletedProcess:
    env = (
        clean_environment()
        | env_file_keys(ENV_EXAMPLE)
        | {
            "DATABASE_URL": database_url,
            "AWS_STORAGE_BUCKET_NAME": "",  # no storage to wait for here
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        }
    )
    env |= overrides
    return subprocess.run([str(INIT)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)


def _superusers(database_url) -> list[str]:
    with psycopg2.connect(database_url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('auth_user') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute("SELECT username FROM auth_user WHERE is_superuser")
        return [row[0] for row in cursor.fetchall()]


def test_init_refuses_a_copy_of_env_example_naming_the_secret_key(database_url):
    result = _run_init(database_url)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "bin/init-env" in result.stderr
    assert _superusers(database_url) == []


def test_init_refuses_the_example_superuser_password(database_url):
    # A weak one is refused the same way (core/tests/test_accounts.py has the validators' cases).
    password = env_file_keys(ENV_EXAMPLE)["DJANGO_SUPERUSER_PASSWORD"]
    result = _run_init(database_url, **GOOD_SECRETS, DJANGO_SUPERUSER_PASSWORD=password)
    assert result.returncode != 0
    # manage.py logged: the refusal is a JSON log line (command.failed) on stdout.
    assert "DJANGO_SUPERUSER_PASSWORD" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    assert _superusers(database_url) == []


def test_init_creates_the_superuser_with_a_strong_password(database_url):
    # A re-run leaves it alone: core/tests/test_accounts.py.
    result = _run_init(database_url, **GOOD_SECRETS, DJANGO_SUPERUSER_PASSWORD="Zx8-init-test-strong-password")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Superuser admin created" in result.stdout
    assert _superusers(database_url) == ["admin"]
