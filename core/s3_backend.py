"""The S3 storage backend: django-storages' S3Storage with per-object metadata and one shared boto3 session."""

import threading
from datetime import UTC, datetime
from typing import IO

import boto3
import botocore.session
from botocore.awsrequest import AWSHTTPConnection, AWSHTTPConnectionPool, AWSHTTPSConnection, AWSHTTPSConnectionPool
from botocore.config import Config
from botocore.utils import parse_timestamp
from django.core.files import File
from storages.backends.s3 import S3Storage
from storages.utils import clean_name, is_seekable

from core.deadlines import DeadlineConnectionMixin, DeadlinePoolMixin, current_deadline

_session_lock = threading.Lock()


class _DeadlineAWSHTTPConnection(DeadlineConnectionMixin, AWSHTTPConnection):  # type: ignore[misc]  # botocore's own mismatch
    pass


class _DeadlineAWSHTTPSConnection(DeadlineConnectionMixin, AWSHTTPSConnection):  # type: ignore[misc]  # botocore's own mismatch
    pass


class _DeadlineAWSHTTPConnectionPool(DeadlinePoolMixin, AWSHTTPConnectionPool):
    ConnectionCls = _DeadlineAWSHTTPConnection


class _DeadlineAWSHTTPSConnectionPool(DeadlinePoolMixin, AWSHTTPSConnectionPool):
    ConnectionCls = _DeadlineAWSHTTPSConnection


def with_deadlines(client):
    """The boto3 client, its connections honouring core.deadlines.deadline_scope (botocore's timeouts are per socket op)."""
    # botocore has no public hook for its connection pools: its URLLib3Session keeps them in a
    # PoolManager (pinned botocore; chat/tests/images/test_deadlines.py fails if this stops working).
    manager = client._endpoint.http_session._manager
    manager.pool_classes_by_scheme = {"http": _DeadlineAWSHTTPConnectionPool, "https": _DeadlineAWSHTTPSConnectionPool}
    client.meta.events.register_first("needs-retry.s3", _no_retry_past_the_deadline)
    return client


def _no_retry_past_the_deadline(**kwargs) -> None:
    """Past the deadline no retry, and no backoff before one: the call ends with DeadlineExceeded."""
    scope = current_deadline()
    if scope is not None and scope.expired:
        raise scope.error()
    # None: botocore's own retry rules decide.


def parse_s3_timestamp(value):
    """botocore's timestamp parser, without dateutil for the ISO 8601 form a listing gives each key.

    A ListObjectsV2 page carries 1,000 LastModified values; dateutil's generic parser spent a third
    of verify_images' CPU on them (~170 µs each, ~5 µs here). The same instant, aware, in UTC
    (botocore's own gives dateutil's tzlocal() when the machine's zone is UTC); every other form
    (a HEAD's RFC 822 Last-Modified, epoch seconds) as botocore parses it.
    """
    if isinstance(value, str) and value.endswith("Z"):
        try:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            pass
    return parse_timestamp(value)


class ObjectContent(File):
    """A file to store with its content type and S3 object metadata (SharedClientS3Storage writes both).

    After a save to S3, etag is the object's ETag as the storage answered it (empty elsewhere).
    """

    def __init__(self, file: IO[bytes], *, content_type: str, metadata: dict[str, str]):
        super().__init__(file)
        self.content_type = content_type
        self.metadata = metadata
        self.etag = ""


class SharedClientS3Storage(S3Storage):
    """S3Storage that writes `content.metadata` as object metadata and shares one boto3 session across threads."""

    def _save(self, name, content):
        # Below the multipart threshold one PutObject does the job: s3transfer's
        # per-upload manager and threads cost three times the CPU of the request.
        size = getattr(content, "size", None)
        if self.gzip or size is None or size >= self.transfer_config.multipart_threshold or not is_seekable(content):
            saved = super()._save(name, content)
            if isinstance(content, ObjectContent):
                # A multipart upload's ETag is not the bytes' MD5 and the transfer does not return it: ask.
                head = self.shared_client.head_object(
                    Bucket=self.bucket_name, Key=self._normalize_name(clean_name(name))
                )
                content.etag = head.get("ETag", "").strip('"')
            return saved
        cleaned_name = clean_name(name)
        key = self._normalize_name(cleaned_name)
        params = self._get_write_parameters(key, content)
        content.seek(0)
        body = content.read()
        if isinstance(body, str):
            body = body.encode()
        response = self.shared_client.put_object(Bucket=self.bucket_name, Key=key, Body=body, **params)
        if isinstance(content, ObjectContent):
            content.etag = response.get("ETag", "").strip('"')
        return cleaned_name

    @property
    def shared_client(self):
        """One boto3 client for every thread (clients are thread-safe): no per-thread set-up cost."""
        client = self.__dict__.get("_shared_client")
        if client is None:
            with _session_lock:
                client = self.__dict__.get("_shared_client")
                if client is None:
                    client = self.__dict__["_shared_client"] = with_deadlines(
                        self._create_session().client(
                            "s3",
                            region_name=self.region_name,
                            use_ssl=self.use_ssl,
                            endpoint_url=self.endpoint_url,
                            # The server validates anyway; client-side validation is ~5% of an upload's CPU.
                            config=self.client_config.merge(Config(parameter_validation=False)),
                            verify=self.verify,
                        )
                    )
        return client

    def _get_write_parameters(self, name, content=None):
        # get_object_parameters() only sees the name; the metadata belongs to the content.
        params = super()._get_write_parameters(name, content)
        metadata = getattr(content, "metadata", None)
        if metadata:
            params["Metadata"] = {**params.get("Metadata", {}), **metadata}
        return params

    def _create_session(self):
        # django-storages makes a session per thread and each one loads S3's service
        # model again (~13 MB); one session shared by every thread loads it once.
        session = self.__dict__.get("_shared_session")
        if session is None:
            core = botocore.session.get_session()
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_s3_timestamp)
            # As django-storages' own _create_session, on that botocore session.
            if self.session_profile:
                session = boto3.Session(profile_name=self.session_profile, botocore_session=core)
            else:
                session = boto3.Session(
                    aws_access_key_id=self.access_key,
                    aws_secret_access_key=self.secret_key,
                    aws_session_token=self.security_token,
                    botocore_session=core,
                )
            self.__dict__["_shared_session"] = session
        return session

    @property
    def connection(self):
        # Resources stay per thread (they are not thread-safe); creating them from the
        # shared session must not happen concurrently.
        connection = getattr(self._connections, "connection", None)
        if connection is None:
            with _session_lock:
                connection = super().connection
                with_deadlines(connection.meta.client)
        return connection

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_shared_session", None)
        state.pop("_shared_client", None)
        return state
