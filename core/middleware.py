"""Middleware of the chat app."""

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
