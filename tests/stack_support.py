"""Starting a LocalStack for a test module: its own PostgreSQL database and a clean environment."""

import contextlib
import os
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import requests
from psycopg2 import sql
from requests.adapters import HTTPAdapter

from deploy.local_stack import LocalStack
from devservers.s3 import S3Server

# Keys the test settings put into os.environ; the stack runs production settings from scratch.
_CONFIG_PREFIXES = (
    "DJANGO_",
    "DATABASE_",
    "AWS_",
    "IMAGE_",
    "SENTRY_",
    "LOG_",
    "GUNICORN_",
    "NGINX_",
    "CELERY_",
    "BROADCAST_",
)


def clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(_CONFIG_PREFIXES)}


@contextlib.contextmanager
def stack_database(name_suffix: str):
    """A fresh database beside the test run's (DATABASE_URL), dropped afterwards; yields its URL."""
    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pru_app"))
    name = f"{base.path.lstrip('/')}_stack_{name_suffix}"
    admin_url = urlunsplit(base._replace(path="/postgres"))

    def run(statement):
        connection = psycopg2.connect(admin_url, connect_timeout=5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(base._replace(path=f"/{name}"))
    finally:
        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def running_stack(*, name: str, run_dir, overrides: dict[str, str] | None = None):
    """A LocalStack on its own database; logs stay in run_dir for a failing test to show."""
    with stack_database(name) as database_url:
        stack = LocalStack(
            environ=clean_environment(),
            overrides={"DATABASE_URL": database_url, "LOG_FORMAT": "json", **(overrides or {})},
            run_dir=run_dir,
            s3_server=S3Server(),
        )
        with stack:
            yield stack


class _SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source_address: str):
        self._source_address = (source_address, 0)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = self._source_address
        super().init_poolmanager(*args, **kwargs)


def client_from(address: str) -> requests.Session:
    """A session whose connections leave from this loopback address (what nginx sees as $remote_addr)."""
    session = requests.Session()
    session.mount("http://", _SourceAddressAdapter(address))
    return session
