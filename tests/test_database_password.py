"""Any database password works: the settings take the database as parts (what compose passes), checked by a real server.

The system PostgreSQL trusts every local connection, so it would accept any password: these tests
start their own cluster that requires scram-sha-256, on a free loopback port, and stop it after.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from chat.tests.subprocess_helpers import run_manage
from devservers.s3 import free_port

# What `openssl rand -base64` and password managers produce, plus what a URL cannot hold raw.
HOSTILE_PASSWORDS = [
    "a/b+c=d?e@f:g#h",
    # A leading "$" (django-environ's reference syntax), quotes, a space, a backslash, an escape.
    "$HOME/Zm9v+YmF6==?'q\" s\\%41@:#",
]
ROLE = "pru_app_password_test"
SUPERUSER_PASSWORD = "cluster-superuser-password"


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.skip(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def password_cluster():
    """A throwaway PostgreSQL that checks passwords; yields its port."""
    directory = Path(tempfile.mkdtemp(prefix="pru-pg-password-"))
    directory.chmod(0o755)
    password_file = directory / "superuser-password"
    password_file.write_text(SUPERUSER_PASSWORD)
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(password_file, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                _postgres_bin("initdb"),
                "-D",
                str(data),
                "--auth=scram-sha-256",
                "--username=postgres",
                f"--pwfile={password_file}",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = subprocess.Popen(
        _as_postgres(
            [
                _postgres_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={directory}",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=port,
                    user="postgres",
                    password=SUPERUSER_PASSWORD,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _set_role_password(port: int, password: str) -> None:
    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", password=SUPERUSER_PASSWORD, dbname="postgres", connect_timeout=5
    )
    connection.autocommit = True
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(ROLE)), [password])
    connection.close()


def _connect_through_settings(env: dict) -> subprocess.CompletedProcess:
    return run_manage(
        "shell",
        "-c",
        "from django.db import connection\n"
        "with connection.cursor() as cursor: cursor.execute('SELECT current_user'); print('as', cursor.fetchone()[0])",
        env_overrides={"DJANGO_SETTINGS_MODULE": "pru_app.settings", "DJANGO_SECRET_KEY": "p" * 60, **env},
    )


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_settings_from_parts_connect_with_any_password(password_cluster, password):
    _set_role_password(password_cluster, password)
    # What docker-compose.yml passes the app services (DATABASE_URL blanked, the parts set).
    result = _connect_through_settings(
        {
            "DATABASE_URL": "",
            "DATABASE_HOST": "127.0.0.1",
            "DATABASE_PORT": str(password_cluster),
            "DATABASE_NAME": "postgres",
            "DATABASE_USER": ROLE,
            "DATABASE_PASSWORD": password,
        }
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith(f"as {ROLE}")


def test_the_wrong_password_is_refused_so_the_check_above_means_something(password_cluster):
    _set_role_password(password_cluster, HOSTILE_PASSWORDS[0])
    result = _connect_through_settings(
        {
            "DATABASE_URL": "",
            "DATABASE_HOST": "127.0.0.1",
            "DATABASE_PORT": str(password_cluster),
            "DATABASE_NAME": "postgres",
            "DATABASE_USER": ROLE,
            "DATABASE_PASSWORD": HOSTILE_PASSWORDS[0] + "x",
        }
    )
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr


def test_the_same_password_pasted_into_a_url_breaks_the_settings(password_cluster):
    """Why compose passes parts: the old `postgres://user:${POSTGRES_PASSWORD}@db…` line."""
    _set_role_password(password_cluster, HOSTILE_PASSWORDS[0])
    url = f"postgres://{ROLE}:{HOSTILE_PASSWORDS[0]}@127.0.0.1:{password_cluster}/postgres"
    result = _connect_through_settings({"DATABASE_URL": url})
    assert result.returncode != 0


def test_a_url_and_parts_together_are_refused():
    result = run_manage(
        "check",
        env_overrides={
            "DJANGO_SETTINGS_MODULE": "pru_app.settings",
            "DJANGO_SECRET_KEY": "p" * 60,
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "DATABASE_HOST": "db",
        },
    )
    assert result.returncode != 0
    assert "Set DATABASE_URL or DATABASE_HOST" in result.stderr
