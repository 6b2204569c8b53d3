"""The hardened edge under test: one stack (nginx, Gunicorn, PostgreSQL, S3 answering like MinIO, Sentry ingest).

Clients reach nginx from loopback addresses of their own, which is what nginx sees as the client:
127.0.0.1 is this host (readiness probes), OUTSIDE_ADDRESS stands for the internet, and
TRUSTED_PROXY_ADDRESS is the TLS terminator in front of nginx (NGINX_TRUSTED_PROXIES).
"""

import re

import psycopg2
import pytest
import requests

from devservers.photo_api import PhotoApiServer
from devservers.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from devservers.sentry_ingest import SentryIngestServer
from tests.minio_headers_proxy import MinioHeadersProxy
from tests.stack_support import client_from, running_stack

OUTSIDE_ADDRESS = "127.0.0.2"
TRUSTED_PROXY_ADDRESS = "127.0.0.3"
__all__ = ["client_from"]  # the tests of this package import it from here
EDGE_ADMIN = {"username": "edge-admin", "password": "edge-admin-password-for-tests-only"}
EDGE_PHOTOS = 2
LOGIN_RATE_PER_SECOND = 1
LOGIN_BURST = 3


def log_in(session: requests.Session, base_url: str, credentials: dict, **kwargs) -> requests.Response:
    session.get(base_url + "/admin/login/", timeout=10, **kwargs)
    return session.post(
        base_url + "/admin/login/",
        data={**credentials, "csrfmiddlewaretoken": session.cookies["csrftoken"], "next": "/admin/"},
        timeout=10,
        **kwargs,
    )


def table_counts(database_url: str) -> dict[str, int]:
    """Rows of every table of the stack's database: what "the database is unchanged" compares."""
    with psycopg2.connect(database_url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        tables = [row[0] for row in cursor.fetchall()]
        counts = {}
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 (names from pg_tables, not from input)
            counts[table] = cursor.fetchone()[0]
    return counts


@pytest.fixture(scope="package")
def edge_sentry():
    with SentryIngestServer() as server:
        yield server


@pytest.fixture(scope="package")
def edge_stack(tmp_path_factory, edge_sentry):
    """The stack with stored images in a bucket behind MinIO's headers, and a staff superuser."""
    with (
        S3Server() as s3,
        MinioHeadersProxy(upstream=s3.host_port) as storage,
        PhotoApiServer(photos=EDGE_PHOTOS, image_size=5_000) as photo_api,
    ):
        s3.create_bucket("pru-edge")
        overrides = {
            "AWS_S3_ENDPOINT_URL": storage.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_STORAGE_BUCKET_NAME": "pru-edge",
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "DJANGO_SUPERUSER_USERNAME": EDGE_ADMIN["username"],
            "DJANGO_SUPERUSER_PASSWORD": EDGE_ADMIN["password"],
            "DJANGO_SUPERUSER_EMAIL": "edge-admin@example.com",
            "SENTRY_DSN": edge_sentry.dsn,
            "SENTRY_TRACES_SAMPLE_RATE": "0.0",
            "GUNICORN_ACCESS_LOG": "-",
            "NGINX_TRUSTED_PROXIES": TRUSTED_PROXY_ADDRESS,
            "NGINX_LOGIN_RATE": f"{LOGIN_RATE_PER_SECOND * 60}r/m",
            "NGINX_LOGIN_BURST": str(LOGIN_BURST),
            "NGINX_CLIENT_MAX_BODY_SIZE": "1m",
        }
        with running_stack(name="edge", run_dir=tmp_path_factory.mktemp("edge-stack"), overrides=overrides) as stack:
            result = stack.manage("fetch_images", "--no-progress", timeout=120)
            assert re.search(rf"newly stored:\s+{EDGE_PHOTOS}\b", result.stdout), result.stdout
            stack.moto = s3
            yield stack


@pytest.fixture(scope="package")
def stored_image_ids(edge_stack) -> list[int]:
    output = edge_stack.manage(
        "shell",
        "-c",
        (
            "from chat.models import Image\n"
            "print('stored:', *Image.objects.filter(status='stored').order_by('pk').values_list('pk', flat=True))"
        ),
    ).stdout
    return [int(value) for value in output.rpartition("stored:")[2].split()]


@pytest.fixture(scope="package")
def staff_session(edge_stack) -> requests.Session:
    """Logged in once: every login POST counts against this address's rate limit."""
    session = requests.Session()
    response = log_in(session, edge_stack.url, EDGE_ADMIN)
    assert "/admin/logout/" in response.text, response.text[:500]
    return session
