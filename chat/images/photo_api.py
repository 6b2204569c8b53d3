"""HTTP client for the photo API: pages of photos, validated at the edge. No database, no storage."""

import json
from dataclasses import dataclass, field
from typing import TypeGuard

import requests

from core.database import BIGINT_MAX
from core.deadlines import DeadlineExceeded, DeadlineScope, deadline_scope
from core.outbound_http import AddressRefused, UnsafeURL, check_url

MAX_URL_LENGTH = 2048
MAX_TITLE_LENGTH = 500
MAX_PAGE_SIZE = 1000
# A page of 1000 photos is ~300 KB; anything near this is not a page.
MAX_PAGE_BYTES = 10 * 1024 * 1024
# The columns are PostgreSQL bigints: a larger JSON number must not reach the INSERT.


class PhotoApiError(Exception):
    """The photo API could not give a usable page."""


class PhotoApiUnavailable(PhotoApiError):
    """The API did not answer, or kept answering with an error status after retries."""


class PhotoApiBadResponse(PhotoApiError):
    """The API answered with something that is not a page of photos."""


@dataclass(frozen=True)
class Photo:
    """One photo as listed by the API."""

    photo_id: int
    url: str
    title: str = ""
    description: str = ""
    user_id: int | None = None


@dataclass(frozen=True)
class RejectedEntry:
    """A listed entry that is not a usable photo, and why."""

    position: int
    reason: str
    url: str | None = None


@dataclass
class PhotoPage:
    offset: int
    limit: int
    total_photos: int | None
    photos: list[Photo] = field(default_factory=list)
    rejected: list[RejectedEntry] = field(default_factory=list)

    @property
    def entry_count(self) -> int:
        """Entries the API listed on this page, usable or not (the next offset advances by this)."""
        return len(self.photos) + len(self.rejected)


class PhotoApiClient:
    """Reads pages from a list endpoint such as https://api.slingacademy.com/v1/sample-data/photos."""

    def __init__(self, *, list_url: str, session: requests.Session, deadline_seconds: float = 60.0):
        """deadline_seconds bounds each page's request, headers and body, however slowly the API sends."""
        self.list_url = check_url(list_url)
        self.session = session
        self.deadline_seconds = deadline_seconds

    def page(self, *, offset: int, limit: int) -> PhotoPage:
        """One page; PhotoApiUnavailable or PhotoApiBadResponse when it cannot be read."""
        body = self._get_json(self.list_url, params={"offset": offset, "limit": limit})
        return parse_page(body, offset=offset, limit=limit)

    def _get_json(self, url: str, *, params: dict) -> object:
        with deadline_scope(self.deadline_seconds, what="photo API page") as deadline:
            try:
                response = self.session.get(url, params=params, headers={"Accept": "application/json"}, stream=True)
                with response:
                    if response.status_code != 200:
                        raise PhotoApiUnavailable(f"HTTP {response.status_code} from {response.url}")
                    body = _read_at_most(response, MAX_PAGE_BYTES, deadline=deadline)
            except DeadlineExceeded as error:
                raise PhotoApiUnavailable(f"{error} for {url}") from error
            except AddressRefused as error:
                raise PhotoApiUnavailable(f"refused to connect to a private address ({error}) for {url}") from error
            except requests.RequestException as error:
                if deadline.expired:
                    raise PhotoApiUnavailable(f"{deadline.error()} for {url}") from error
                raise PhotoApiUnavailable(f"{type(error).__name__} for {url}: {error}") from error
        if body is None:
            raise PhotoApiBadResponse(f"page from {response.url} is larger than {MAX_PAGE_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError as error:
            snippet = body[:80].decode(errors="replace").replace("\n", " ")
            raise PhotoApiBadResponse(f"not JSON from {response.url}: {snippet!r}") from error


def _read_at_most(response: requests.Response, limit: int, *, deadline: DeadlineScope) -> bytes | None:
    """The body, or None past limit bytes: a hostile API must not fill our memory with one page."""
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    # A body the watchdog cut short can end "cleanly" when the API sent no length.
    if deadline.fired:
        raise deadline.error()
    return b"".join(chunks)


def parse_page(body: object, *, offset: int, limit: int) -> PhotoPage:
    """A validated page from the API's JSON; entries that are not usable photos are listed as rejected."""
    if not isinstance(body, dict):
        raise PhotoApiBadResponse(f"page at offset {offset} is a JSON {type(body).__name__}, not an object")
    if body.get("success") is False:
        raise PhotoApiBadResponse(f"page at offset {offset}: API says {str(body.get('message'))[:200]!r}")
    entries = body.get("photos")
    if not isinstance(entries, list):
        raise PhotoApiBadResponse(f"page at offset {offset} has no 'photos' list")
    total = body.get("total_photos")
    page = PhotoPage(offset=offset, limit=limit, total_photos=total if _is_int(total) and total >= 0 else None)
    for position, entry in enumerate(entries):
        try:
            page.photos.append(parse_photo(entry))
        except ValueError as error:
            url = entry.get("url") if isinstance(entry, dict) and isinstance(entry.get("url"), str) else None
            page.rejected.append(RejectedEntry(position=offset + position, reason=str(error), url=url))
    return page


def parse_photo(entry: object) -> Photo:
    """A Photo from one listed entry; ValueError naming the problem otherwise."""
    if not isinstance(entry, dict):
        raise ValueError(f"entry is a {type(entry).__name__}, not an object")
    photo_id = entry.get("id")
    if not _is_int(photo_id) or not 0 <= photo_id <= BIGINT_MAX:
        raise ValueError(f"invalid id {photo_id!r:.40}")
    try:
        url = check_url(entry.get("url"))
    except UnsafeURL as error:
        raise ValueError(f"photo {photo_id}: {error}") from error
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"photo {photo_id}: URL longer than {MAX_URL_LENGTH} characters")
    user = entry.get("user")
    return Photo(
        photo_id=photo_id,
        url=url,
        title=_text(entry.get("title"))[:MAX_TITLE_LENGTH],
        description=_text(entry.get("description")),
        user_id=user if _is_int(user) and abs(user) <= BIGINT_MAX else None,
    )


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int in Python, never an id in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str:
    """Missing or null text fields become empty; other types are not trusted as text."""
    return value.replace("\x00", "") if isinstance(value, str) else ""
