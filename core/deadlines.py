"""Wall-clock deadlines for outbound HTTP: a watchdog shuts a connection's socket down when its deadline passes.

urllib3's (and so requests' and botocore's) timeouts bound each socket operation, not a whole
request: a peer that sends one byte every half second never trips a 30 s read timeout and holds
the caller for as long as it likes, in the headers or in the body. Inside `deadline_scope(s)`
every connection made by a deadline-aware pool (`deadline_pool_classes`) is watched: at the
deadline a single watchdog thread shuts its socket down, which wakes a blocked recv() at once
whether or not bytes are arriving. The caller's read then fails, and `DeadlineExceeded` (or
`scope.expired`) tells it why. A request started after the deadline is refused before it is sent,
so urllib3's retries cannot start over past it either.
"""

import contextvars
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class DeadlineExceeded(Exception):
    """The scope's wall-clock deadline passed (not an OSError: urllib3 must not retry it)."""


class DeadlineScope:
    """One deadline and the connections it may cut."""

    def __init__(self, seconds: float, *, what: str = "request"):
        self.seconds = seconds
        self.what = what
        self.at = time.monotonic() + seconds
        self.fired = False
        self._connections: list[HTTPConnection] = []
        self._closed = False

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.at

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.what} took longer than its {self.seconds:g}s deadline")

    def check(self) -> None:
        """DeadlineExceeded once the deadline has passed."""
        if self.expired:
            raise self.error()

    def _fire(self) -> None:
        with _owners:
            if self._closed:
                return
            self.fired = True
            # Only the connections this scope still holds: one it gave back to its pool may be
            # serving another request (another scope's, in another thread) by now.
            sockets = [_socket_of(conn) for conn in self._connections if _owner(conn) is self]
            self._connections = []
        for sock in sockets:
            if sock is not None:
                _shut(sock)

    def _close(self) -> None:
        with _owners:
            self._closed = True
            self._connections = []


# Guards which scope holds which connection (set when a pool hands a connection out, cleared
# when it takes it back), so that a deadline never cuts a connection it no longer holds.
_owners = threading.Lock()
_OWNER_ATTRIBUTE = "_pru_deadline_scope"


_SOCKET_ATTRIBUTE = "_pru_deadline_socket"


def _owner(conn: HTTPConnection) -> "DeadlineScope | None":
    return getattr(conn, _OWNER_ATTRIBUTE, None)


def _socket_of(conn: HTTPConnection) -> socket.socket | None:
    # Remembered at connect and send: http.client drops conn.sock as soon as a response says
    # "Connection: close", while that response goes on reading from the very same socket.
    return getattr(conn, _SOCKET_ATTRIBUTE, None) or conn.sock


def _hold(conn: HTTPConnection, scope: "DeadlineScope | None") -> None:
    """conn now serves scope (None: back in its pool); a fired scope's new connection is cut at once."""
    with _owners:
        setattr(conn, _OWNER_ATTRIBUTE, scope)
        if scope is None or scope._closed:
            return
        if not scope.fired:
            scope._connections.append(conn)
            return
    sock = _socket_of(conn)
    if sock is not None:
        _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: its override would drop the TLS object
    # under the thread reading from it; a plain shutdown(2) wakes that read with end-of-file.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to wake


class _Watchdog:
    """One daemon thread for every scope of the process: fires each at its deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, DeadlineScope]] = []
        self._counter = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, scope: DeadlineScope) -> None:
        with self._condition:
            heapq.heappush(self._heap, (scope.at, next(self._counter), scope))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbound-deadlines", daemon=True)
                self._thread.start()
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap:
                    self._condition.wait()
                at, _, scope = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)
            scope._fire()


_watchdog = _Watchdog()
_current: contextvars.ContextVar[DeadlineScope | None] = contextvars.ContextVar("outbound_deadline", default=None)


@contextmanager
def deadline_scope(seconds: float, *, what: str = "request") -> Iterator[DeadlineScope]:
    """Every request a deadline-aware pool sends inside the block ends by `seconds` from now.

    A scope inside another keeps the earlier of the two deadlines.
    """
    outer = _current.get()
    if outer is not None and outer.remaining() < seconds:
        seconds = outer.remaining()
    scope = DeadlineScope(seconds, what=what)
    _watchdog.add(scope)
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
        scope._close()


def current_deadline() -> DeadlineScope | None:
    return _current.get()


class DeadlineConnectionMixin:
    """A urllib3 connection that refuses to send past its scope's deadline, with timeouts cut to what is left."""

    sock: socket.socket | None
    timeout: float | None

    def _bound_by_deadline(self) -> "DeadlineScope | None":
        scope = _owner(self)  # type: ignore[arg-type]
        if scope is None:
            return None
        scope.check()
        # A silent peer then fails by its own timeout near the deadline, before the watchdog has to act.
        if not isinstance(self.timeout, int | float) or self.timeout > scope.remaining():
            self.timeout = max(scope.remaining(), 0.001)
        return scope

    def connect(self) -> None:
        scope = self._bound_by_deadline()
        super().connect()  # type: ignore[misc]
        setattr(self, _SOCKET_ATTRIBUTE, self.sock)
        if scope is not None and scope.fired and self.sock is not None:
            _shut(self.sock)  # fired while connecting: the socket it could not see yet

    def request(self, *args, **kwargs) -> None:
        self._bound_by_deadline()
        if self.sock is not None:
            setattr(self, _SOCKET_ATTRIBUTE, self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class DeadlinePoolMixin:
    """A urllib3 pool whose connections belong to the deadline scope that took them out."""

    def _get_conn(self, timeout=None):
        # urllib3's own checkout and return (private but stable since 1.x): the only place that
        # knows when a connection starts and stops serving a request, redirects and retries included.
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _hold(conn, _current.get())
        return conn

    def _put_conn(self, conn) -> None:
        if conn is not None:
            _hold(conn, None)
        super()._put_conn(conn)  # type: ignore[misc]


class DeadlineHTTPConnection(DeadlineConnectionMixin, HTTPConnection):
    pass


class DeadlineHTTPSConnection(DeadlineConnectionMixin, HTTPSConnection):
    pass


class DeadlineHTTPConnectionPool(DeadlinePoolMixin, HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(DeadlinePoolMixin, HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


def deadline_pool_classes() -> dict[str, type[HTTPConnectionPool]]:
    """A urllib3 PoolManager's pool_classes_by_scheme whose connections honour deadline_scope."""
    return {"http": DeadlineHTTPConnectionPool, "https": DeadlineHTTPSConnectionPool}
