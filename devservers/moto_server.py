"""moto's standalone S3 server (`python -m moto.server`), with its per-request module listing cached
and a listing that reads one page, not the whole bucket, per request.

moto 5 lists and stats its whole package directory on every request to find the service
(~180 stat calls, about half of its CPU per S3 request); the listing never changes while it runs.

moto's ListObjectsV2 builds, filters and sorts every key object of the bucket for every page
(0.9 s a page at 20,000 keys, so listing 100,000 keys takes minutes: quadratic). Without a
delimiter the same answer comes from the sorted key names and the page's own objects: what
bench/verify measures is then verify_images, not moto. Its serializer costs a millisecond a
key too: the plain listing's XML is written directly.
"""

from bisect import bisect_right
from urllib.parse import quote
from xml.sax.saxutils import escape

from moto import backends, settings
from moto.s3.models import FakeBucket, FakeDeleteMarker, FakeKey, S3Backend
from moto.s3.responses import S3Response
from moto.server import main

_MODULES = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _MODULES

_list_objects_v2 = S3Backend.list_objects_v2


def _paged_list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    if delimiter or type(bucket) is not FakeBucket:
        return _list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys)
    # dict.keys: the names alone (the store's own keys() copies every version list).
    names = sorted(name for name in dict.keys(bucket.keys) if name.startswith(prefix or ""))
    after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
    position = bisect_right(names, after) if after else 0
    page: list[FakeKey] = []
    while position < len(names) and len(page) <= max_keys:
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

if __name__ == "__main__":
    main()
