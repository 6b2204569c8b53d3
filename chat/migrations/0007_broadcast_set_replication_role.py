"""Let the app's database role skip per-row foreign-key checks in a broadcast's insert, and nothing more.

A broadcast chunk locks the chats and images it references FOR KEY SHARE and inserts with
session_replication_role = replica for that statement (chat/broadcasts/inserts.py): the
guarantee of the foreign keys, checked once per chunk instead of once per row. Setting that
parameter takes a superuser, or on PostgreSQL 15+ `GRANT SET ON PARAMETER
session_replication_role`, which this migration gives to the app's role (DATABASE_APP_ROLE,
or the role running the migration) when the migrating role may grant it and the role lacks it.
Otherwise it prints the statement for whoever administers the server; until it is run, broadcasts fall back to
row-wise checks (and say so once per process). Reversing revokes the grant.
"""

from django.conf import settings
from django.db import migrations


def _target_role(cursor) -> str:
    cursor.execute("SELECT current_user")
    return settings.DATABASE_APP_ROLE or cursor.fetchone()[0]


def grant(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        role = _target_role(cursor)
        cursor.execute(
            """
            SELECT current_setting('server_version_num')::int >= 150000,
                   COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = %s), false),
                   (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            """,
            [role],
        )
        supported, role_is_superuser, may_grant = cursor.fetchone()
        if role_is_superuser or not supported:
            # A superuser may set it already; before PostgreSQL 15 only a superuser can.
            return
        cursor.execute(
            """
            SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)
                        THEN has_parameter_privilege(%s, 'session_replication_role', 'SET') ELSE false END
            """,
            [role, role],
        )
        if cursor.fetchone()[0]:
            # Granted already (compose's db-setup grants it as the superuser before init migrates as
            # the schema's owner, who may not grant it): nothing to do, nothing to ask for.
            return
        if not may_grant:
            cursor.execute(
                "SELECT has_parameter_privilege(current_user, 'session_replication_role', 'SET WITH GRANT OPTION')"
            )
            may_grant = cursor.fetchone()[0]
        statement = f"GRANT SET ON PARAMETER session_replication_role TO {quote(role)}"
        if may_grant:
            cursor.execute(statement)
        else:
            print(
                f"\n  Broadcasts will check foreign keys row by row until a superuser runs: {statement};"
                " (docs/broadcasts.md)"
            )


def revoke(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        role = _target_role(cursor)
        cursor.execute(
            """
            SELECT current_setting('server_version_num')::int >= 150000
               AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s AND NOT rolsuper)
               AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            """,
            [role],
        )
        if cursor.fetchone()[0]:
            cursor.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {connection.ops.quote_name(role)}")


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_broadcast_read_floor_and_database_clock"),
    ]

    operations = [
        migrations.RunPython(grant, revoke, elidable=False),
    ]
