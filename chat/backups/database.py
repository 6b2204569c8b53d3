"""The database half of a backup: pg_dump / pg_restore for PostgreSQL, SQLite's online backup API for SQLite."""

import os
import sqlite3
import subprocess
from pathlib import Path

from django.db import connection

from chat.backups.errors import BackupError


def database_dump(*, directory: Path) -> Path:
    """Dump the default database into directory; the file written."""
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        target = directory / "database.dump"
        # Custom format: compressed, and pg_restore can --clean into an existing database.
        _run(
            [
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={target}",
                *_pg_arguments(settings),
            ],
            settings=settings,
            what="pg_dump",
        )
        return target
    if connection.vendor == "sqlite":
        target = directory / "database.sqlite3"
        source = sqlite3.connect(settings["NAME"])
        try:
            with sqlite3.connect(target) as copy:
                source.backup(copy)  # consistent even while the app writes
        finally:
            source.close()
        return target
    raise BackupError(f"no database backup for {connection.vendor}")


def database_restore(*, directory: Path) -> Path:
    """Replace the default database's tables with the dump in directory; the file read."""
    settings = connection.settings_dict
    # Our own session would hold locks pg_restore --clean must take.
    connection.close()
    if connection.vendor == "postgresql":
        source = directory / "database.dump"
        _require(source)
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                *_pg_arguments(settings, flag="--dbname"),
                str(source),
            ],
            settings=settings,
            what="pg_restore",
        )
        return source
    if connection.vendor == "sqlite":
        source = directory / "database.sqlite3"
        _require(source)
        with sqlite3.connect(source) as backup, sqlite3.connect(settings["NAME"]) as live:
            backup.backup(live)
        return source
    raise BackupError(f"no database restore for {connection.vendor}")


def _pg_arguments(settings: dict, *, flag: str = "--dbname") -> list[str]:
    arguments = [f"{flag}={settings['NAME']}"]
    if settings.get("HOST"):
        arguments.append(f"--host={settings['HOST']}")
    if settings.get("PORT"):
        arguments.append(f"--port={settings['PORT']}")
    if settings.get("USER"):
        arguments.append(f"--username={settings['USER']}")
    return arguments


def _run(command: list[str], *, settings: dict, what: str) -> None:
    environment = dict(os.environ)
    if settings.get("PASSWORD"):
        # In the child's environment, never on its command line (visible to every user in ps).
        environment["PGPASSWORD"] = settings["PASSWORD"]
    try:
        result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError as error:
        raise BackupError(f"{what} is not installed (Debian: apt-get install postgresql-client)") from error
    if result.returncode != 0:
        raise BackupError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def _require(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"{path} not found: not a backup of this kind of database")
