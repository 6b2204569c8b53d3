"""Newest-first keyset pages of a chat's messages: an opaque cursor, shared by the API and the /chat/ page.

DRF's CursorPagination would serve, but its cursor carries an offset (up to 1,000 rows skipped
for a crafted one) and a reverse direction; a chat needs only "older than this message",
which is exactly one indexed range scan (chat.messaging.selectors.message_page).
"""

import base64
import binascii
from dataclasses import dataclass

from django.utils.http import urlencode
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from chat.messaging.selectors import MessagePage
from core.database import BIGINT_MAX

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CURSOR_PARAM = "cursor"
LIMIT_PARAM = "limit"
_PREFIX = "before:"
# Message ids are PostgreSQL bigints.


class InvalidPageRequest(ValueError):
    """A cursor or limit that no page answers to."""


def cursor_encode(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{before_id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> int:
    """The message id a cursor continues before; InvalidPageRequest for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidPageRequest("Invalid cursor.") from error
    digits = text.removeprefix(_PREFIX)
    if (
        not text.startswith(_PREFIX)
        or not digits.isdigit()
        or not digits.isascii()
        or not 0 < int(digits) <= BIGINT_MAX
    ):
        raise InvalidPageRequest("Invalid cursor.")
    return int(digits)


@dataclass(frozen=True)
class PageRequest:
    before_id: int | None
    limit: int


def page_request_from(query) -> PageRequest:
    """?cursor= and ?limit= checked at the edge (a QueryDict or any mapping of strings)."""
    cursor = query.get(CURSOR_PARAM) or None
    raw_limit = query.get(LIMIT_PARAM)
    limit = DEFAULT_LIMIT
    if raw_limit not in (None, ""):
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise InvalidPageRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
        limit = int(raw_limit)
    return PageRequest(before_id=cursor_decode(cursor) if cursor else None, limit=limit)


def next_page_query(query, page: MessagePage) -> str | None:
    """The query string of the next (older) page, keeping the other parameters; None on the last."""
    if page.next_before_id is None:
        return None
    parameters = {key: value for key, value in query.items() if key != CURSOR_PARAM}
    parameters[CURSOR_PARAM] = cursor_encode(page.next_before_id)
    return urlencode(parameters)


class MessageCursorPagination(BasePagination):
    """{"next": URL or null, "results": [...]}; the view fetches the page through the selector."""

    def page_request(self, request) -> PageRequest:
        try:
            return page_request_from(request.query_params)
        except InvalidPageRequest as error:
            raise ValidationError({"detail": str(error)}) from error

    def paginated_response(self, data, *, request, page: MessagePage) -> Response:
        """DRF's get_paginated_response, with the request and the page the view read (it holds no page itself)."""
        query = next_page_query(request.query_params, page)
        next_url = request.build_absolute_uri(f"{request.path}?{query}") if query else None
        return Response({"next": next_url, "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "results"],
            "properties": {
                "next": {"type": "string", "format": "uri", "nullable": True, "description": "The next, older page."},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": CURSOR_PARAM,
                "in": "query",
                "required": False,
                "description": "Opaque: the `next` link of the previous page carries it.",
                "schema": {"type": "string"},
            },
            {
                "name": LIMIT_PARAM,
                "in": "query",
                "required": False,
                "description": f"Messages per page (default {DEFAULT_LIMIT}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            },
        ]
