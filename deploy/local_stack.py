"""The compose stack without Docker: Gunicorn, the worker, beat and Debian's nginx on loopback, from the same files."""

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from deploy.nginx_config import write_config
from deploy.ports import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = PROJECT_ROOT / "deploy" / "compose"

# Plain HTTP on loopback: the production defaults (HTTPS redirect, secure cookies, HSTS) would
# lock a browser out, so the runner turns them off unless the environment says otherwise.
LOOPBACK_DEFAULTS = {
    "DJANGO_SETTINGS_MODULE": "pru_app.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_SESSION_COOKIE_SECURE": "false",
    "DJANGO_CSRF_COOKIE_SECURE": "false",
    "DJANGO_SECURE_HSTS_SECONDS": "0",
    "LOG_FORMAT": "json",
    "AWS_STORAGE_BUCKET_NAME": "pru-app",
    "IMAGE_SERVE_MODE": "x-accel",
    "GUNICORN_WORKERS": "2",
    "GUNICORN_THREADS": "1",
    "NGINX_CLIENT_MAX_BODY_SIZE": "10m",
    "NGINX_LOGIN_RATE": "10r/m",
    "NGINX_LOGIN_BURST": "5",
    "NGINX_TRUST_FORWARDED_PROTO": "off",
    "NGINX_PROXY_READ_TIMEOUT": "60s",
}


class StackError(RuntimeError):
    """A part of the local stack did not start or did not become ready."""


class S3ServerProcess(Protocol):
    """An S3 server the stack starts and stops with itself (for development and tests: devservers.s3.S3Server).

    Without one, and without AWS_S3_ENDPOINT_URL, images go to Django's FileSystemStorage under
    <run dir>/media (DJANGO_MEDIA_ROOT), served by nginx from disk.
    """

    endpoint_url: str
    access_key: str
    secret_key: str

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def create_bucket(self, name: str) -> object: ...


# The keys a management command needs to act on the stack (bin/manage reads them from manage.env).
MANAGE_ENV_PREFIXES = ("DJANGO_", "DATABASE_", "AWS_", "IMAGE_", "SENTRY_", "LOG_", "CELERY_", "BROADCAST_")


class LocalStack:
    """nginx → Gunicorn → Django (+ s3_server, or a media folder, unless AWS_S3_ENDPOINT_URL is set); a context manager."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
        run_dir: Path | None = None,
        port: int = 0,
        echo_logs: bool = False,
        ready_timeout: float = 90.0,
        s3_server: S3ServerProcess | None = None,
    ):
        self._base_environ = dict(os.environ if environ is None else environ)
        self._overrides = dict(overrides or {})
        self._owns_run_dir = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="pru-stack-")).resolve()
        self.port = port or free_port()
        self.echo_logs = echo_logs
        self.ready_timeout = ready_timeout
        self.env: dict[str, str] = {}
        self.s3_server = s3_server
        self._processes: dict[str, subprocess.Popen] = {}

    # --- addresses ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gunicorn_url(self) -> str:
        return f"http://{self.env['GUNICORN_BIND']}"

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def log_text(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "LocalStack":
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self.env = self._build_environment()
            self.manage("collectstatic", "--noinput", "--verbosity", "0", timeout=180)
            self._run_step("init", [str(COMPOSE_DIR / "init" / "start")], timeout=180)
            self._spawn("gunicorn", [str(COMPOSE_DIR / "web" / "start")], extra_env=self._metrics_env("gunicorn"))
            self.wait_until_ready(url=self.gunicorn_url + "/healthz")
            if self.env.get("CELERY_BROKER_URL"):
                self._spawn("worker", [str(COMPOSE_DIR / "worker" / "start")], extra_env=self._metrics_env("worker"))
                # The broadcast sweeper's own worker, as compose's `sweeper` service.
                self._spawn("sweeper", [str(COMPOSE_DIR / "worker" / "start")], extra_env=self._sweeper_env())
                self._spawn("beat", [str(COMPOSE_DIR / "beat" / "start")])
                if self.env.get("FLOWER_PORT"):
                    self._spawn("flower", [str(COMPOSE_DIR / "flower" / "start")])
            self._start_nginx()
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """nginx first (no new requests), then Gunicorn, the worker and beat, then storage."""
        nginx = self._processes.pop("nginx", None)
        if nginx is not None:
            _terminate(nginx, signal.SIGQUIT)  # graceful: finish the requests in flight
        for name in list(self._processes):
            _terminate(self._processes.pop(name), signal.SIGTERM)
        if self.s3_server is not None:
            self.s3_server.stop()
        if self._owns_run_dir and not os.environ.get("PRU_KEEP_STACK_DIR"):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def wait_until_ready(self, *, url: str | None = None, headers=None, timeout: float | None = None) -> None:
        """Block until url (nginx's /readyz by default) answers 200; fail early if a child died."""
        url = url or self.url + "/readyz"
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        last = "no answer"
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with {process.returncode}:\n{self.log_text(name)[-3000:]}")
            try:
                request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (our own loopback URL)
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                last = f"{error.code} {error.read()[:300]!r}"
            except OSError as error:
                last = repr(error)
            time.sleep(0.2)
        raise StackError(f"{url} not ready: {last}\n{self.log_text('gunicorn')[-3000:]}")

    def all_running(self) -> bool:
        return all(process.poll() is None for process in self._processes.values())

    # --- commands against the stack's settings -----------------------------------------------------
    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run manage.py with the stack's environment (database, storage, settings)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def storage_description(self) -> str:
        if not self.env.get("AWS_STORAGE_BUCKET_NAME"):
            return f"files under {self.env['DJANGO_MEDIA_ROOT']} (kept across restarts)"
        where = f"{self.env['AWS_S3_ENDPOINT_URL']}, bucket {self.env['AWS_STORAGE_BUCKET_NAME']}"
        return where + (
            " (started with the stack, IN MEMORY: every image is gone when this stops)" if self.s3_server else ""
        )

    def write_manage_env(self, path: Path) -> Path:
        """The stack's settings as a shell file (0600: it holds the secret key) for bin/manage."""
        lines = [f"PRU_SERVE_PID={os.getpid()}"]
        lines += [
            f"{key}={shlex.quote(value)}"
            for key, value in sorted(self.env.items())
            if key.startswith(MANAGE_ENV_PREFIXES)
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write("# Written by bin/serve while it runs; bin/manage reads it. Deleted when bin/serve stops.\n")
            handle.write("\n".join(lines) + "\n")
        return path

    def stop_storage(self) -> None:
        """Stop the S3 server this stack started (an outage, for readiness tests)."""
        self._require_own_storage().stop()

    def start_storage(self) -> None:
        """Start it again on the same port (moto forgets its buckets) and recreate the bucket."""
        server = self._require_own_storage()
        server.start()
        server.create_bucket(self.env["AWS_STORAGE_BUCKET_NAME"])

    # --- internals ---------------------------------------------------------------------------------
    def _build_environment(self) -> dict[str, str]:
        env = dict(self._base_environ)
        env.update(self._overrides)
        for key, value in LOOPBACK_DEFAULTS.items():
            env.setdefault(key, value)
        env["DJANGO_SETTINGS_MODULE"] = self._overrides.get("DJANGO_SETTINGS_MODULE", "pru_app.settings")
        env.setdefault("DJANGO_SECRET_KEY", self._secret_key())
        env.setdefault("DJANGO_STATIC_ROOT", str(self.run_dir / "static"))
        env.setdefault("CELERY_BEAT_SCHEDULE_FILE", str(self.run_dir / "celerybeat-schedule"))
        # The start scripts call `python`, `gunicorn` and `celery`: this interpreter's.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["PYTHONUNBUFFERED"] = "1"

        env.setdefault("DJANGO_MEDIA_ROOT", str(self.run_dir / "media"))
        env["NGINX_MEDIA_ROOT"] = env["DJANGO_MEDIA_ROOT"]
        if not env.get("AWS_S3_ENDPOINT_URL") and self.s3_server is None:
            # No bucket: settings pick FileSystemStorage under DJANGO_MEDIA_ROOT, kept across restarts.
            env["AWS_STORAGE_BUCKET_NAME"] = ""
            Path(env["DJANGO_MEDIA_ROOT"]).mkdir(parents=True, exist_ok=True)
            # The template's S3 location still needs an address; nothing is ever sent to it.
            env["STORAGE_UPSTREAM"] = "127.0.0.1:9"
            self._finish_environment(env)
            return env
        if not env.get("AWS_S3_ENDPOINT_URL") and self.s3_server is not None:
            self.s3_server.start()
            env["AWS_S3_ENDPOINT_URL"] = self.s3_server.endpoint_url
            env["AWS_ACCESS_KEY_ID"] = self.s3_server.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3_server.secret_key
        endpoint = urlsplit(env["AWS_S3_ENDPOINT_URL"])
        env["STORAGE_UPSTREAM"] = endpoint.netloc if endpoint.port else f"{endpoint.hostname}:80"
        self._finish_environment(env)
        return env

    def _finish_environment(self, env: dict[str, str]) -> None:

        gunicorn_port = free_port()
        env["GUNICORN_BIND"] = f"127.0.0.1:{gunicorn_port}"
        env["NGINX_LISTEN"] = f"127.0.0.1:{self.port}"
        env["NGINX_APP_UPSTREAM"] = env["GUNICORN_BIND"]
        env["NGINX_STATIC_ROOT"] = env["DJANGO_STATIC_ROOT"]
        # The worker serves its metrics on loopback (Prometheus scrapes it beside Gunicorn's /metrics).
        env.setdefault("CELERY_METRICS_PORT", str(free_port()))
        env.setdefault("CELERY_SWEEPER_METRICS_PORT", str(free_port()))
        env.setdefault("CELERY_METRICS_ADDRESS", "127.0.0.1")

    def _secret_key(self) -> str:
        # Kept in the run directory so sessions survive a restart of bin/serve.
        path = self.run_dir / "secret_key"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(50))
            path.chmod(0o600)
        return path.read_text().strip()

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise StackError("nginx is not installed: run bin/setup-dev")
        nginx_dir = self.run_dir / "nginx"
        config = write_config(
            run_dir=nginx_dir,
            environ=self.env,
            as_root=os.geteuid() == 0,
            worker_processes=self.env.get("NGINX_WORKER_PROCESSES", "auto"),
        )
        command = [nginx, "-p", str(nginx_dir), "-c", str(config), "-e", "stderr"]
        checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            raise StackError(f"nginx -t rejected the rendered template:\n{checked.stderr}")
        self._spawn("nginx", command)

    def _run_step(self, name: str, command: list[str], *, timeout: float) -> None:
        with self.log_path(name).open("ab") as log:
            result = subprocess.run(
                command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        if self.echo_logs:
            sys.stdout.write(self.log_text(name))
        if result.returncode != 0:
            raise StackError(f"{name} failed ({result.returncode}):\n{self.log_text(name)[-3000:]}")

    def _sweeper_env(self) -> dict[str, str]:
        """The sweeper's worker reads only its queue, one task at a time, as compose's `sweeper`."""
        default_queue = self.env.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
        return {
            "CELERY_WORKER_NAME": "sweeper",
            "CELERY_WORKER_QUEUES": self.env.get("CELERY_SWEEPER_QUEUE") or f"{default_queue}.sweeper",
            "CELERY_WORKER_CONCURRENCY": "1",
            # Its own metrics (it runs the sweeps SweeperNotRunning watches), beside the worker's.
            **self._metrics_env("sweeper"),
            "CELERY_METRICS_PORT": self.env["CELERY_SWEEPER_METRICS_PORT"],
        }

    def _spawn(self, name: str, command: list[str], *, extra_env: Mapping[str, str] | None = None) -> None:
        # Own session: a Ctrl-C in the terminal reaches only the runner, which stops the
        # children in order instead of all of them at once.
        output = None if self.echo_logs else self.log_path(name).open("ab")
        self._processes[name] = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        if output is not None:
            output.close()

    # --- metrics (docs/observability.md#metrics) ------------------------------------------------------
    @property
    def worker_metrics_url(self) -> str:
        """The Celery worker's own /metrics (its pool processes' counters), when a broker runs it."""
        return f"http://127.0.0.1:{self.env['CELERY_METRICS_PORT']}/metrics"

    @property
    def worker_metrics_addresses(self) -> list[str]:
        """Every worker's metrics address (the worker's and the sweeper's), for Prometheus."""
        return [f"127.0.0.1:{self.env[key]}" for key in ("CELERY_METRICS_PORT", "CELERY_SWEEPER_METRICS_PORT")]

    @property
    def flower_url(self) -> str:
        """Flower (FLOWER_PORT set, with a broker), on loopback."""
        return f"http://127.0.0.1:{self.env['FLOWER_PORT']}"

    def _metrics_env(self, name: str) -> dict[str, str]:
        # Each service its own folder for prometheus_client's multiprocess files, as in compose.
        return {"PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics" / name)}

    def _require_own_storage(self):
        if self.s3_server is None or self.env.get("AWS_S3_ENDPOINT_URL") != self.s3_server.endpoint_url:
            raise StackError("this stack uses an external S3 endpoint (AWS_S3_ENDPOINT_URL); it cannot stop it")
        return self.s3_server


def _terminate(process: subprocess.Popen, sig: int, timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
