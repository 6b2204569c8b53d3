"""core.postgresql: a connection the server closed between requests is replaced, with no SELECT 1 round trip."""

import select

import psycopg2
import pytest
from django.db import InterfaceError, OperationalError, connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backend"),
]


def _terminate_from_outside(pid: int) -> None:
    """pg_terminate_backend through a connection of its own, then wait until its goodbye reached our socket."""
    parameters = connection.get_connection_params()
    parameters.pop("cursor_factory", None)
    parameters.pop("context", None)
    other = psycopg2.connect(**parameters)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0]
    finally:
        other.close()
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(10_000), f"nothing from the server on backend {pid}'s socket within 10 s"


def _between_requests() -> None:
    # What request_started does (django.db.close_old_connections): the next query checks the connection.
    connection.close_if_unusable_or_obsolete()


def test_a_connection_the_server_terminated_is_replaced_before_the_next_query(monkeypatch):
    assert connection.settings_dict["ENGINE"] == "core.postgresql"
    connection.ensure_connection()
    old_pid = connection.connection.get_backend_pid()
    _terminate_from_outside(old_pid)
    _between_requests()

    def no_round_trip():
        raise AssertionError("the health check sent SELECT 1")

    monkeypatch.setattr(connection, "is_usable", no_round_trip)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_a_healthy_connection_is_kept():
    connection.ensure_connection()
    pid = connection.connection.get_backend_pid()
    _between_requests()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid


def test_without_the_check_the_request_after_a_termination_fails(monkeypatch):
    """What the check is for: with it off the first query on the terminated connection fails."""
    connection.ensure_connection()
    _terminate_from_outside(connection.connection.get_backend_pid())
    _between_requests()
    monkeypatch.setattr(connection, "health_check_enabled", False)
    try:
        with pytest.raises((OperationalError, InterfaceError)), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()
