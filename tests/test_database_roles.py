"""Compose's database roles (deploy/compose/db/setup), made on the real PostgreSQL and used as compose uses them.

The script runs as the server's superuser (compose `db-setup`) on a database whose first table the
superuser made (a volume from before the roles existed), twice (it converges); then `manage.py
migrate` runs as the schema's owner (compose `init`), and the app's role (web, the workers) is
checked for what it may and may not do. Roles are global to the cluster: each run makes its own,
and drops them.
"""

import contextlib
import os
import secrets
import subprocess
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import errors, sql

from chat.tests.subprocess_helpers import run_manage
from tests.deploy_files import PROJECT_ROOT
from tests.stack_support import stack_database

SETUP = PROJECT_ROOT / "deploy" / "compose" / "db" / "setup"


def _connect(url: str, **parts):
    base = urlsplit(url)
    connection = psycopg2.connect(
        host=base.hostname,
        port=base.port or 5432,
        dbname=parts.get("dbname", base.path.lstrip("/")),
        user=parts.get("user", base.username or "postgres"),
        password=parts.get("password", base.password),
        connect_timeout=5,
    )
    connection.autocommit = True
    return connection


@pytest.fixture(scope="module")
def roles():
    """A database prepared as db-setup prepares compose's; yields its URL and the two roles' names."""
    suffix = secrets.token_hex(3)
    with stack_database(f"roles_{suffix}") as url:
        base = urlsplit(url)
        admin = _connect(url)
        with admin.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if not cursor.fetchone()[0]:
                pytest.skip("DATABASE_URL's role is no superuser: db-setup needs one")
            # A volume from before: the superuser migrated, so it owns the tables.
            cursor.execute("CREATE TABLE legacy_rows (id bigserial PRIMARY KEY, note text)")
        owner, app = f"pru_test_owner_{suffix}", f"pru_test_app_{suffix}"
        passwords = {"owner": secrets.token_urlsafe(16), "app": secrets.token_urlsafe(16)}
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGHOST": base.hostname,
            "PGPORT": str(base.port or 5432),
            "PGUSER": base.username or "postgres",
            "PGPASSWORD": base.password or "the-cluster-trusts-local-connections",
            "PGDATABASE": base.path.lstrip("/"),
            "POSTGRES_OWNER_USER": owner,
            "POSTGRES_OWNER_PASSWORD": passwords["owner"],
            "POSTGRES_APP_USER": app,
            "POSTGRES_APP_PASSWORD": passwords["app"],
        }
        try:
            yield {"url": url, "owner": owner, "app": app, "passwords": passwords, "environment": environment}
        finally:
            with admin.cursor() as cursor:
                # Also revokes the shared grants (the database, the parameter) before the roles go.
                for role in (app, owner):  # one at a time: the owner's default privileges name the app's role
                    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
                    if cursor.fetchone():
                        cursor.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            admin.close()
            with contextlib.closing(_connect(url, dbname="postgres")) as server, server.cursor() as cursor:
                name = base.path.lstrip("/")
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}, {}").format(sql.Identifier(owner), sql.Identifier(app)))


def _setup(environment) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SETUP)], env=environment, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def migrated(roles):
    """db-setup twice (it converges), then `migrate` as the schema's owner, as compose's init runs it."""
    outputs = [_setup(roles["environment"]) for _ in range(2)]
    for result in outputs:
        assert result.returncode == 0, result.stderr
    base = urlsplit(roles["url"])
    owner_url = urlunsplit(
        base._replace(netloc=f"{roles['owner']}:{roles['passwords']['owner']}@{base.hostname}:{base.port or 5432}")
    )
    migrate = run_manage(
        "migrate",
        "--noinput",
        env_overrides={
            "DJANGO_SETTINGS_MODULE": "pru_app.settings",
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": owner_url,
            "DATABASE_APP_ROLE": roles["app"],
        },
        timeout=300,
    )
    return {**roles, "setup_output": outputs[-1].stdout, "migrate": migrate}


def _as(roles, role: str):
    return _connect(roles["url"], user=roles[role], password=roles["passwords"][role])


def _fails(connection, statement: str, error=errors.InsufficientPrivilege) -> bool:
    with connection.cursor() as cursor:
        try:
            cursor.execute(statement)
        except error:
            return True
    return False


def test_the_setup_reports_an_app_role_without_power_that_may_set_the_replication_role(migrated):
    assert (
        f"app role {migrated['app']}: superuser f, create role f, create database f, set session_replication_role t"
    ) in migrated["setup_output"]


def test_the_owner_migrates_and_migration_0007_asks_no_administrator_for_a_grant_that_exists(migrated):
    result = migrated["migrate"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Before: "Broadcasts will check foreign keys row by row until a superuser runs: GRANT …".
    assert "row by row" not in result.stdout + result.stderr
    assert "Applying chat.0010" in result.stdout


def test_every_object_belongs_to_the_owner_and_neither_role_has_power_beyond_it(migrated):
    with contextlib.closing(_as(migrated, "app")) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )
        assert cursor.fetchall() == [(migrated["owner"],)]  # legacy_rows too: it changed hands
        cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        assert cursor.fetchone()[0] == migrated["owner"]
        cursor.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles"
            " WHERE rolname IN (%s, %s) ORDER BY rolname",
            [migrated["app"], migrated["owner"]],
        )
        assert [row[1:] for row in cursor.fetchall()] == [(False,) * 5] * 2


def test_the_app_role_reads_and_writes_rows_and_nothing_more(migrated):
    with contextlib.closing(_as(migrated, "app")) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
            assert cursor.fetchone()[0] is True
            cursor.execute("BEGIN; SET LOCAL session_replication_role = replica; COMMIT")
            cursor.execute("INSERT INTO legacy_rows (note) VALUES ('a row') RETURNING id")
            cursor.execute("UPDATE auth_user SET last_login = NULL WHERE false")
            cursor.execute("DELETE FROM legacy_rows")
        assert _fails(connection, "CREATE ROLE pru_test_intruder")
        assert _fails(connection, "ALTER SYSTEM SET work_mem = '1GB'")
        assert _fails(connection, "SELECT rolpassword FROM pg_authid")
        assert _fails(connection, "CREATE TABLE intruder (id int)")
        assert _fails(connection, "DROP TABLE chat_message")
        assert _fails(connection, "ALTER TABLE chat_message DISABLE TRIGGER USER")
        assert _fails(connection, "TRUNCATE chat_message")
        assert _fails(connection, "COPY legacy_rows TO PROGRAM 'id'")
        assert _fails(connection, "CREATE TEMPORARY TABLE intruder (id int)")


def test_a_table_a_later_migration_makes_is_the_app_roles_to_use_too(migrated):
    with contextlib.closing(_as(migrated, "owner")) as owner, owner.cursor() as cursor:
        cursor.execute("CREATE TABLE later_rows (id bigserial PRIMARY KEY)")
    with contextlib.closing(_as(migrated, "app")) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO later_rows DEFAULT VALUES RETURNING id")
        assert cursor.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"POSTGRES_APP_PASSWORD": "change-me-bin-init-env-writes-a-random-password"}, "POSTGRES_APP_PASSWORD"),
        ({"POSTGRES_OWNER_PASSWORD": ""}, "POSTGRES_OWNER_PASSWORD"),
        ({"POSTGRES_APP_USER": "__superuser__"}, "is the server's superuser"),
        ({"POSTGRES_APP_USER": "__owner__"}, "must not own the schema"),
    ],
)
def test_the_setup_refuses_placeholders_and_shared_roles(roles, change, message):
    environment = roles["environment"] | change
    if change.get("POSTGRES_APP_USER") == "__superuser__":
        environment["POSTGRES_APP_USER"] = environment["PGUSER"]
    if change.get("POSTGRES_APP_USER") == "__owner__":
        environment["POSTGRES_APP_USER"] = environment["POSTGRES_OWNER_USER"]
    result = _setup(environment)
    assert result.returncode == 1 and message in result.stderr, result.stderr
