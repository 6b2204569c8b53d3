"""Threads for I/O-bound work that keep the caller's context (structlog's bound fields, Sentry's scope)."""

import contextvars
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager


class ContextThreadPool(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose every task runs in a copy of the submitting thread's contextvars.

    Without the copy a worker thread's log lines lose the run's request_id and its Sentry spans
    their transaction. map() goes through submit(), so it keeps the context too.
    """

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


@contextmanager
def fewer_gil_handoffs() -> Iterator[None]:
    """Let a thread keep the GIL up to 50 ms instead of 5 ms while the workers run.

    The workers mostly wait on sockets and give the GIL up there anyway; forcing a
    handoff every 5 ms among sixteen of them cost ~8% of the run's CPU (bench/fetch).
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(max(previous, 0.05))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
