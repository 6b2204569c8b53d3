"""HTTP sessions for untrusted URLs: requests-hardened's IP filter, timeouts, retries with backoff."""

from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3 import PoolManager
from urllib3.util.retry import Retry

from core.deadlines import deadline_pool_classes

ALLOWED_SCHEMES = ("http", "https")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "pru_app-image-fetch/1.0"

# Re-exported: the error raised when a resolved address is private, loopback, link-local or reserved.
AddressRefused = InvalidIPAddress


class UnsafeURL(ValueError):
    """A URL that is not http(s) with a host."""


@dataclass(frozen=True)
class OutboundPolicy:
    """How an outbound session treats addresses, time and failures."""

    allow_private_networks: bool = False
    # requests-hardened's own switch: loopback only, every other private range still refused.
    allow_loopback: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff_factor: float = 0.25
    # A server asking for "Retry-After: 3600" must not stall a worker for an hour.
    retry_after_max: int = 10
    max_redirects: int = 5
    pool_size: int = 10

    @classmethod
    def from_settings(cls, **overrides) -> "OutboundPolicy":
        values = {
            "allow_private_networks": settings.IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS,
            "connect_timeout": settings.IMAGE_FETCH_CONNECT_TIMEOUT,
            "read_timeout": settings.IMAGE_FETCH_READ_TIMEOUT,
            "retries": settings.IMAGE_FETCH_RETRIES,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def check_url(url: object) -> str:
    """The URL if it is an http(s) URL with a host; UnsafeURL otherwise."""
    if not isinstance(url, str):
        raise UnsafeURL(f"URL is not a string: {type(url).__name__}")
    if any(character <= " " or character == "\x7f" for character in url):
        raise UnsafeURL("URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as error:
        raise UnsafeURL(f"malformed URL: {error}") from error
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURL(f"scheme {parts.scheme!r} is not allowed (only http and https)")
    if not parts.hostname:
        raise UnsafeURL("URL has no host")
    if port == 0:
        raise UnsafeURL("URL has port 0")
    return url


def outbound_session(policy: OutboundPolicy) -> requests.Session:
    """A session whose every hop (redirects included) passes the IP filter before a connection is opened."""
    session = HTTPSession(
        Config(
            # The filter is mounted below, with our pool size and retries.
            ip_filter_enable=False,
            ip_filter_allow_loopback_ips=False,
            never_redirect=False,
            default_timeout=policy.timeout,
            user_agent_override=USER_AGENT,
        )
    )
    session.max_redirects = policy.max_redirects
    # No proxies or ~/.netrc from the environment: a proxy would resolve names past the
    # IP filter, and netrc credentials must never go to a URL an API handed us.
    session.trust_env = False
    retry = Retry(
        total=policy.retries,
        connect=policy.retries,
        read=policy.retries,
        status=policy.retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=policy.backoff_factor,
        backoff_max=5,
        retry_after_max=policy.retry_after_max,
        # Hand back the last 5xx response: callers turn it into their own error.
        raise_on_status=False,
        raise_on_redirect=False,
        redirect=False,
    )
    for scheme in ("http://", "https://"):
        if policy.allow_private_networks:
            # requests-hardened only knows "loopback or nothing"; private networks
            # allowed means no address filter at all (tests, local demos).
            adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=policy.pool_size, max_retries=retry)
        else:
            adapter = _FilteringAdapter(
                is_https_proto=scheme == "https://",
                allow_loopback=policy.allow_loopback,
                pool_maxsize=policy.pool_size,
                max_retries=retry,
            )
        session.mount(scheme, adapter)
    return session


class _DeadlinePools:
    """An adapter whose connections honour core.deadlines.deadline_scope (a wall-clock bound on a whole request)."""

    poolmanager: PoolManager

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[misc]
        self.poolmanager.pool_classes_by_scheme = deadline_pool_classes()


class _DeadlineAdapter(_DeadlinePools, HTTPAdapter):
    pass


class _FilteringAdapter(_DeadlinePools, IPFilterAdapter):
    """requests-hardened's IP filter adapter with a pool sized for our workers, urllib3 retries and deadlines."""

    def __init__(self, *, is_https_proto: bool, allow_loopback: bool, pool_maxsize: int, max_retries: Retry):
        super().__init__(is_https_proto=is_https_proto, allow_loopback=allow_loopback)
        self.max_retries = max_retries
        self.init_poolmanager(4, pool_maxsize)
