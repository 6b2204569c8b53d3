"""Middleware of the chat app: /healthz first, and Django's user and messages middleware skipped for API tokens."""

from django.contrib.auth import middleware as auth
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import middleware as messages
from django.utils.deprecation import MiddlewareMixin

from core.health import healthz

LIVENESS_PATH = "/healthz"


class LivenessProbeMiddleware:
    """Answers /healthz first: no session, no user, no host check, no request log line.

    A liveness probe asks only whether the process answers. Probes arrive every few seconds
    from compose, nginx or a load balancer, by IP rather than by host name, and would
    otherwise open a session lookup and write two log lines each. First in MIDDLEWARE.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == LIVENESS_PATH:
            return healthz(request)
        return self.get_response(request)


# --- browser state, skipped for API token requests ------------------------------------------------------

API_PATH_PREFIX = "/api/"


def is_api_token_request(request) -> bool:
    """A request to the API that names a token (Authorization: Token …).

    Every /api/ view puts DRF's token authentication first (chat.messaging.api.authentication), which
    authenticates such a request by the token or refuses it (401) and never falls back to a session:
    it has no use for a session, a session's user, CSRF (which guards cookie-borne credentials) or flash
    messages. A view added under /api/ without token authentication would see such a request as
    anonymous: refused, never let in.
    """
    return request.path_info.startswith(API_PATH_PREFIX) and request.META.get("HTTP_AUTHORIZATION", "")[:6] == "Token "


class _SkippedForApiTokens(MiddlewareMixin):
    """A MiddlewareMixin subclass's __call__, bypassed for API token requests (is_api_token_request)."""

    def __call__(self, request):
        if is_api_token_request(request):
            self.on_skip(request)
            return self.get_response(request)
        return super().__call__(request)

    def on_skip(self, request) -> None:
        pass


class AuthenticationMiddleware(_SkippedForApiTokens, auth.AuthenticationMiddleware):
    """Django's, except for API token requests: anonymous until DRF authenticates the token (and sets the user)."""

    def on_skip(self, request) -> None:
        request.user = AnonymousUser()


class MessageMiddleware(_SkippedForApiTokens, messages.MessageMiddleware):
    """Django's, except for API token requests (the API renders no template that shows messages)."""
