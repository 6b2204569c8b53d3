"""Admin actions that meet an outage answer a message, never a 500."""

import functools

from django.contrib import messages
from django.db import connection
from kombu.exceptions import OperationalError as KombuOperationalError

from core.database import TRANSIENT_DATABASE_ERRORS

DATABASE_DOWN_MESSAGE = (
    "The database became unavailable while this ran ({error}). What had finished is kept; "
    "nothing is half-written. Run the action again once the database is back."
)
BROKER_DOWN_MESSAGE = (
    "The task broker became unavailable while this ran ({error}). What had finished is kept; "
    "run the action again once the broker is back."
)


def answers_outages(action):
    """Wrap an admin action: a database or broker outage becomes an error message on the page.

    Services already turn the outages they expect into their own results; this is the net under
    whatever query an outage breaks first (a refresh, a count, a log of the outcome).
    """

    @functools.wraps(action)
    def guarded(modeladmin, request, queryset):
        try:
            return action(modeladmin, request, queryset)
        except TRANSIENT_DATABASE_ERRORS as error:
            # The response must not touch this connection again: Django drops it at the request's end.
            connection.close_if_unusable_or_obsolete()
            modeladmin.message_user(request, DATABASE_DOWN_MESSAGE.format(error=_first_line(error)), messages.ERROR)
        except KombuOperationalError as error:
            modeladmin.message_user(request, BROKER_DOWN_MESSAGE.format(error=_first_line(error)), messages.ERROR)
        return None

    return guarded


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
