"""Django's PostgreSQL backend whose per-request health check reads the socket instead of sending SELECT 1.

CONN_HEALTH_CHECKS makes Django send SELECT 1 before a request's first query, so that a connection
the server closed (a restart, pg_terminate_backend, an idle timeout, a failover) is replaced rather
than failing the request. That is a third round trip for the recipients' API, whose requests are
two queries (bench/http_recipients).

Between requests a healthy connection is idle: the server sends nothing unasked (this app LISTENs to
nothing). A server that closes a connection sends a FATAL error message or just the TCP FIN, and
either makes the socket readable. So the check polls the socket without waiting: readable, or closed
on the client's side, means unusable, and Django reconnects as before. Go's MySQL driver checks its
pooled connections the same way. What neither check sees is a peer that vanished without a word (a
cable pulled): SELECT 1 would wait for TCP's timeout there too.

After an error during a request Django still asks is_usable() (SELECT 1) before keeping the connection.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        enabled = getattr(self, "health_check_enabled", False)  # Django's attribute; django-stubs lacks it
        if self.pool or self.connection is None or not enabled or getattr(self, "health_check_done", False):
            return super().close_if_health_check_failed()
        if not self.is_idle_and_open():
            self.close()
        self.health_check_done = True

    def is_idle_and_open(self) -> bool:
        """No byte waiting from the server and not closed: usable, as far as can be known without a round trip."""
        try:
            if self.connection.closed:
                return False
            poller = select.poll()
            poller.register(self.connection.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError, self.Database.Error):
            return False
