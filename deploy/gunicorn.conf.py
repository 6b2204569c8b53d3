"""Gunicorn settings for pru_app: every value from the environment, logs on stdout."""

import multiprocessing
import os

from pru_app.logging_setup import gunicorn_logconfig_dict


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
wsgi_app = "pru_app.wsgi:application"

# sync: one request per process at a time, behind nginx, which buffers slow clients. Each
# free process takes the next connection from the shared socket, so requests are served in
# arrival order; gthread keeps every keep-alive connection it accepted, a busy process's
# connections wait while another idles, and threads share one GIL. Measured on the Messages
# changelist (bench/http, 16 connections, 2 cores): sync 2 x 1 gave the same requests/s as
# gthread 2 x 1 and p99 1.2x p50 instead of 2-2.5x; gthread 2 x 4 was slower still.
# 2 x cores + 1 (Gunicorn's own starting point) leaves processes free while others wait on
# the database or storage. GUNICORN_THREADS > 1 makes Gunicorn use gthread.
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1)
threads = _int("GUNICORN_THREADS", 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than nginx's upstream keepalive would leave idle, so nginx closes first.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
# Recycling bounds any slow leak; jitter keeps the workers from restarting together. Rare enough
# that a busy worker does not pay Django's start-up every few seconds.
max_requests = _int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 2000)
# Django is imported once in the master; a new or recycled worker is a fork, not a fresh start.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in ("1", "true", "yes", "on")
# The heartbeat file lives in memory in containers (/dev/shm), where the disk may be slow.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None
# Only nginx reaches Gunicorn (compose network or loopback); it sets the forwarded headers.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Gunicorn 25.1+ opens a control socket under $XDG_RUNTIME_DIR or $HOME/.gunicorn by default;
# nothing here uses gunicornc, and a read-only or shared home must not be written to.
control_socket_disable = True

# Logs: Django's own request log (django-structlog, with the request id) on stdout; Gunicorn's
# access log is off unless asked for (GUNICORN_ACCESS_LOG=-), since nginx logs every request too.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # "-" is stdout
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}i)s'
# Gunicorn's "-" means stderr; its own messages belong on stdout with everything else.
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "/dev/stdout")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
capture_output = False
# Both logs as the app's lines (JSON under LOG_FORMAT=json); the access atoms become fields.
logconfig_dict = gunicorn_logconfig_dict(access_log=bool(accesslog), level=loglevel.upper())


def child_exit(server, worker) -> None:
    """A worker that exited: prometheus_client's multiprocess mode drops its live gauges (core/metrics.py)."""
    from core.metrics import mark_process_dead

    mark_process_dead(worker.pid)
