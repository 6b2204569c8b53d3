"""What the local stand-ins that run a program of their own (Bugsink, Prometheus) share: waiting and stopping."""

import subprocess
import time
from collections.abc import Callable

import requests


def wait_until_http_ready(
    *,
    name: str,
    url: str,
    process: subprocess.Popen | None,
    timeout: float,
    error: type[Exception],
    log_tail: Callable[[], str],
) -> None:
    """Poll url until it answers 200; raise error with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise error(f"{name} exited with {process.returncode}:\n{log_tail()}")
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as failure:
            last = repr(failure)
        time.sleep(0.3)
    raise error(f"{name} not ready: {last}\n{log_tail()}")


def stop_process(process: subprocess.Popen | None) -> None:
    """TERM, then KILL after 20 s; nothing if it has already gone."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
