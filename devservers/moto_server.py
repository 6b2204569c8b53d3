"""moto's standalone S3 server (`python -m moto.server`), with its per-request module listing cached
and a listing that reads one page, not the whole bucket, per request.

moto 5 lists and stats its whole package directory on every request to find the service
(~180 stat calls, about half of its CPU per S3 request); the listing never changes while it runs.

moto's ListObjectsV2 builds, filters and sorts every key object of the bucket for every page
(0.9 s a page at 20,000 keys, so listing 100,000 keys takes minutes: quadratic). Without a
delimiter the same answer comes from the key names, sorted once until the bucket changes, and
the page's own objects (sorting the names again for every page was still 70% of moto's CPU
listing 100,000 keys: O(n log n) a page). S3 and MinIO answer a page from an index in time
that does not grow with the bucket; so does this, and bench/verify measures verify_images,
not moto. moto's serializer costs a millisecond a key too: the plain listing's XML is written
directly.

Benches fill a bucket with 100,000 objects: one PUT costs moto ~3 ms of CPU (werkzeug, routing,
parsing), minutes for the lot. `POST /_devservers/put-objects` (S3Server.put_objects) puts many
objects of one body in one request through the same backend call a PUT makes: the objects are
the same (ETag, size, metadata, modification time), and what a bench then measures over HTTP is
unchanged.
"""

import argparse
import json
import os
import signal
import sys
from base64 import b64decode
from bisect import bisect_left, bisect_right
from urllib.parse import quote
from xml.sax.saxutils import escape

from moto import backends, settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3 import models as moto_s3_models
from moto.s3.models import FakeBucket, FakeDeleteMarker, FakeKey, S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.s3.utils import _VersionedKeyStore, metadata_from_headers
from werkzeug.serving import run_simple

from devservers.moto_routes import PUT_OBJECTS_PATH

_MODULES = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _MODULES

_list_objects_v2 = S3Backend.list_objects_v2


class _CountedKeyStore(_VersionedKeyStore):
    """moto's key store of a bucket, counting its changes: its sorted names are kept until the next one."""

    changes = 0

    def __setitem__(self, key, value):
        self.changes += 1
        return super().__setitem__(key, value)

    def __delitem__(self, key):
        self.changes += 1
        return super().__delitem__(key)

    def setlist(self, key, list_):
        self.changes += 1
        return super().setlist(key, list_)

    def pop(self, key):  # type: ignore[override]
        self.changes += 1
        return super().pop(key)

    def clear(self):
        self.changes += 1
        return super().clear()

    def popitem(self):
        self.changes += 1
        return super().popitem()

    def setdefault(self, key, default=None):
        self.changes += 1
        return super().setdefault(key, default)

    def update(self, *args, **kwargs):
        self.changes += 1
        return super().update(*args, **kwargs)


# FakeBucket.__init__ makes its key store from this module global.
moto_s3_models._VersionedKeyStore = _CountedKeyStore


def _sorted_names(bucket: FakeBucket) -> list[str]:
    """The bucket's key names in order, sorted again only after a change (not once per page)."""
    store = bucket.keys
    changes = getattr(store, "changes", None)
    cached = getattr(bucket, "_devservers_sorted_names", None)
    if changes is None or cached is None or cached[0] != changes:
        # dict.keys: the names alone (the store's own keys() copies every version list).
        cached = (changes, sorted(dict.keys(store)))
        bucket._devservers_sorted_names = cached
    return cached[1]


def _paged_list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    if delimiter or type(bucket) is not FakeBucket:
        return _list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys)
    names = _sorted_names(bucket)
    prefix = prefix or ""
    after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
    # The names under a prefix are one run of the sorted names.
    position = max(bisect_left(names, prefix), bisect_right(names, after) if after else 0)
    page: list[FakeKey] = []
    while position < len(names) and len(page) <= max_keys and names[position].startswith(prefix):
        key = bucket.keys.get(names[position])
        position += 1
        if key is not None and not isinstance(key, FakeDeleteMarker):
            page.append(key)
    # One key beyond the page tells moto's own truncation (and its continuation token) there is more.
    return self._truncate_result(page, max_keys)


S3Backend.list_objects_v2 = _paged_list_objects_v2

_response_list_objects_v2 = S3Response.list_objects_v2


def _fast_list_objects_v2(self):
    """The plain listing (no delimiter or owner) written as XML directly.

    moto's generic serializer spends about a millisecond a key (a listing page of 1,000 keys:
    a second) picking attributes and parsing each time string again with dateutil.
    """
    query = self.querystring
    encoding = query.get("encoding-type", [None])[0]
    if query.get("delimiter") or query.get("fetch-owner") or encoding not in (None, "url"):
        return _response_list_objects_v2(self)
    continuation_token = query.get("continuation-token", [None])[0]
    if continuation_token == "":
        return _response_list_objects_v2(self)  # its own InvalidContinuationToken
    bucket = self.backend.get_bucket(self.bucket_name)
    prefix = self._get_querystring(self.request, self.uri).get("prefix", [None])[0]
    if isinstance(prefix, bytes):
        prefix = prefix.decode("utf-8")
    max_keys = int(query.get("max-keys", [settings.get_s3_default_max_keys()])[0])
    start_after = query.get("start-after", [None])[0]
    keys, truncated, next_token = self.backend.list_objects_v2(
        bucket=bucket,
        prefix=prefix,
        delimiter=None,
        continuation_token=continuation_token,
        start_after=start_after,
        max_keys=max_keys,
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        f"<Name>{escape(bucket.name)}</Name><MaxKeys>{max_keys}</MaxKeys>",
        # botocore asks for url encoding (and decodes): keys with any character travel safely.
        f"<Prefix>{escape(quote(prefix) if encoding and prefix else prefix or '')}</Prefix>",
        f"<EncodingType>{encoding}</EncodingType>" if encoding else "",
        f"<KeyCount>{len(keys)}</KeyCount><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    parts.extend(
        f"<Contents><Key>{escape(key.safe_name(encoding))}</Key><LastModified>{key.last_modified_ISO8601}</LastModified>"
        f"<ETag>{escape(key.etag)}</ETag><Size>{key.size}</Size>"
        f"<StorageClass>{escape(key.storage_class or 'STANDARD')}</StorageClass></Contents>"
        for key in keys
    )
    if next_token:
        parts.append(f"<NextContinuationToken>{escape(next_token)}</NextContinuationToken>")
    if not continuation_token and start_after:
        parts.append(f"<StartAfter>{escape(start_after)}</StartAfter>")
    parts.append("</ListBucketResult>")
    return 200, {"Content-Type": "application/xml"}, "".join(parts)


S3Response.list_objects_v2 = _fast_list_objects_v2


def _put_objects(environ, start_response):
    """{"bucket", "keys", "body" (base64), "headers"} -> each key put with that body, as a PUT with those headers."""
    request = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    body = b64decode(request["body"])
    metadata = metadata_from_headers(request.get("headers", {}))
    for key in request["keys"]:
        backend.put_object(request["bucket"], key, body).set_metadata(metadata)
    answer = json.dumps({"put": len(request["keys"])}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]


def _with_put_objects(app):
    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == PUT_OBJECTS_PATH and environ.get("REQUEST_METHOD") == "POST":
            return _put_objects(environ, start_response)
        return app(environ, start_response)

    return wsgi


def main(argv=None) -> None:
    """moto.server's main for S3 on loopback (its -H and -p), with the bulk put route."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server sets it
    run_simple(args.host, args.port, _with_put_objects(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
