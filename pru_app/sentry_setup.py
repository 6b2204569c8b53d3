"""Sentry initialisation: only when a DSN is configured."""

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration


def init_sentry(*, dsn: str, environment: str, release: str | None, traces_sample_rate: float) -> bool:
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        integrations=[
            DjangoIntegration(),
            # Log records become breadcrumbs only; exceptions are captured once by the integrations.
            LoggingIntegration(level=None, event_level=None),
        ],
    )
    return True
