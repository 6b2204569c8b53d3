"""Stored images through nginx carry only our headers: nothing of the storage's (HSTS, x-amz-*, …), and Vary: Cookie."""

import re

import boto3
import pytest
import requests
from botocore.config import Config

from devservers.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.deploy_files import PROJECT_ROOT
from tests.minio_headers_proxy import MINIO_HEADERS

pytestmark = pytest.mark.stack

# What a stored image may carry: the HTTP framing, the object's validators, and the headers nginx
# and Django set. Anything else came from the storage.
OUR_HEADERS = {
    "server",
    "date",
    "content-type",
    "content-length",
    "connection",
    "keep-alive",
    "accept-ranges",
    "etag",
    "last-modified",
    "cache-control",
    "vary",
    "x-request-id",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "content-security-policy",
    "permissions-policy",
}
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "default.conf.template"


def _header_names(response) -> list[str]:
    return [name.lower() for name in response.raw.headers.keys()]  # noqa: SIM118 (every line, repeats included)


def test_stored_image_response_carries_only_our_headers_once_each(edge_stack, staff_session, stored_image_ids):
    response = staff_session.get(f"{edge_stack.url}/stored-images/{stored_image_ids[0]}", timeout=10)
    assert response.status_code == 200
    names = _header_names(response)
    assert set(names) <= OUR_HEADERS, sorted(set(names) - OUR_HEADERS)
    assert len(names) == len(set(names)), names
    assert not [name for name in names if name.startswith(("x-amz", "x-minio"))]
    assert response.headers["Server"] == "nginx"
    assert response.headers["Vary"] == "Cookie"
    assert response.headers["Cache-Control"] == "private, max-age=300"
    # The bytes are the internet's, served from our origin: sandboxed, never run.
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_storage_really_sends_the_headers_nginx_hides(edge_stack, stored_image_ids):
    """Without this the test above could pass against a storage that sends nothing to hide."""
    bucket = edge_stack.env["AWS_STORAGE_BUCKET_NAME"]
    # The storage the stack talks to (AWS_S3_ENDPOINT_URL): moto behind MinIO's headers.
    storage = _client_for(edge_stack.env["AWS_S3_ENDPOINT_URL"])
    key = storage.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"]
    direct = requests.get(
        storage.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}), timeout=10
    )
    assert direct.status_code == 200, direct.text[:300]
    names = {name.lower() for name in direct.headers}
    assert {"strict-transport-security", "x-amz-meta-source-url", "x-amz-meta-photo-id", "x-amz-meta-sha256"} <= names
    assert {name.lower() for name in MINIO_HEADERS} <= names


def _client_for(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def test_every_metadata_key_the_app_writes_is_hidden_by_the_internal_location():
    source = (PROJECT_ROOT / "chat" / "images" / "storing.py").read_text()
    metadata = re.search(r"metadata=\{(.*?)\}", source, re.S).group(1)
    keys = re.findall(r'"([a-z0-9-]+)":', metadata)
    assert keys, "no metadata keys found"
    internal = TEMPLATE.read_text().split("location /internal-storage/", 1)[1].split("\n    }", 1)[0]
    hidden = {name.lower() for name in re.findall(r"proxy_hide_header (\S+);", internal)}
    assert {f"x-amz-meta-{key}" for key in keys} <= hidden
