"""bin/serve: the no-Docker stack in the foreground until Ctrl-C or SIGTERM."""

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from deploy.local_stack import PROJECT_ROOT, LocalStack
from devservers.bugsink import BugsinkServer
from devservers.photo_api import PhotoApiServer
from devservers.pictures import DEMO_WIDTH
from devservers.prometheus import PrometheusServer
from devservers.s3 import S3Server

# The demo photo API keeps one port: the rows' source URLs name it, and a repair after a
# restart downloads from the same address.
DEMO_PHOTO_API_PORT = 8100
DEMO_PHOTOS = 132
# --observability: fixed loopback ports, so bookmarks and the DSN survive a restart.
BUGSINK_PORT = 8200
PROMETHEUS_PORT = 9090
FLOWER_PORT = 5555


def main(argv=None) -> int:
    """bin/serve: run the stack in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        description="nginx + Gunicorn + Django (+ image storage) on loopback, without Docker."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", 8000)), help="nginx's port (default 8000)"
    )
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run" / "serve")
    parser.add_argument(
        "--in-memory-s3",
        action="store_true",
        help="store images in moto's in-memory S3 server instead of <run dir>/media: THEY ARE GONE when bin/serve stops",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"also run the local photo API ({DEMO_PHOTOS} photos on 127.0.0.1:{DEMO_PHOTO_API_PORT}) and point fetch_images at it",
    )
    parser.add_argument("--demo-port", type=int, default=DEMO_PHOTO_API_PORT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--observability",
        action="store_true",
        help=f"also run Bugsink (SENTRY_DSN points at it) on :{BUGSINK_PORT}, Prometheus with the alert rules on "
        f":{PROMETHEUS_PORT} and, with CELERY_BROKER_URL, Flower on :{FLOWER_PORT}",
    )
    # Tests run it beside other stacks: free ports instead of the fixed ones.
    parser.add_argument("--bugsink-port", type=int, default=BUGSINK_PORT, help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-port", type=int, default=PROMETHEUS_PORT, help=argparse.SUPPRESS)
    parser.add_argument("--flower-port", type=int, default=FLOWER_PORT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    # SIGTERM (a service manager, `kill`) stops the stack the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    overrides = {"LOG_FORMAT": os.environ.get("LOG_FORMAT", "console")}
    photo_api = None
    if args.demo:
        photo_api = PhotoApiServer(photos=DEMO_PHOTOS, picture_width=DEMO_WIDTH, port=args.demo_port).start()
        # The local API is on loopback, which the SSRF filter refuses unless told: demo only.
        overrides |= {"IMAGE_API_URL": photo_api.url, "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true"}
    bugsink = prometheus = None
    if args.observability:
        bugsink = BugsinkServer(run_dir=args.run_dir / "bugsink", port=args.bugsink_port).start()
        overrides |= _observability_overrides(args.run_dir, dsn=bugsink.dsn, flower_port=args.flower_port)
    stack = LocalStack(
        port=args.port,
        run_dir=args.run_dir,
        echo_logs=True,
        overrides=overrides,
        s3_server=S3Server() if args.in_memory_s3 else None,
    )
    manage_env = args.run_dir / "manage.env"
    try:
        stack.start()
        stack.write_manage_env(manage_env)
        if args.observability:
            prometheus = PrometheusServer(
                run_dir=args.run_dir / "prometheus", targets=_scrape_targets(stack), port=args.prometheus_port
            ).start()
        _report_integrity(stack)
        print(
            f"\npru_app is up: {stack.url}/admin/  (health {stack.url}/healthz, readiness {stack.url}/readyz)\n"
            f"  Gunicorn {stack.gunicorn_url}, storage {stack.storage_description()}\n"
            f"  database {stack.env.get('DATABASE_URL') or 'SQLite (db.sqlite3)'}\n"
            + (f"  photo API (demo) {photo_api.url}\n" if photo_api else "")
            + (_observability_summary(stack, bugsink, prometheus) if bugsink and prometheus else "")
            + "  bin/manage <command> runs a management command against this stack (e.g. bin/manage fetch_images).\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while stack.all_running():
            time.sleep(0.5)
        print("A part of the stack exited; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping nginx, Gunicorn and the storage…", flush=True)
        return 0
    finally:
        manage_env.unlink(missing_ok=True)
        if prometheus is not None:
            prometheus.stop()
        stack.stop()
        if bugsink is not None:
            bugsink.stop()
        if photo_api is not None:
            photo_api.stop()


def _observability_overrides(run_dir: Path, *, dsn: str, flower_port: int) -> dict[str, str]:
    """Errors to Bugsink; Flower (with a broker) behind basic auth whose password stays in the run dir."""
    overrides = {"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": os.environ.get("SENTRY_ENVIRONMENT", "local")}
    if os.environ.get("CELERY_BROKER_URL"):
        password_file = run_dir / "flower_password"
        if not password_file.exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_urlsafe(16))
            password_file.chmod(0o600)
        overrides |= {
            "FLOWER_PORT": str(flower_port),
            "FLOWER_ADDRESS": "127.0.0.1",
            "FLOWER_BASIC_AUTH": f"operator:{password_file.read_text().strip()}",
        }
    return overrides


def _scrape_targets(stack: LocalStack) -> dict[str, list[str]]:
    targets = {"web": [stack.env["GUNICORN_BIND"]]}
    if stack.env.get("CELERY_BROKER_URL"):
        targets["worker"] = stack.worker_metrics_addresses
    return targets


def _observability_summary(stack: LocalStack, bugsink: BugsinkServer, prometheus: PrometheusServer) -> str:
    lines = [
        f"  Bugsink {bugsink.url} (user {bugsink.admin_email}, password in {bugsink.run_dir / 'admin_password'})",
        f"  SENTRY_DSN={bugsink.dsn}",
        f"  Prometheus {prometheus.url} (alerts {prometheus.url}/classic/alerts), scraping {stack.gunicorn_url}/metrics",
    ]
    if stack.env.get("FLOWER_PORT"):
        lines.append(
            f"  Flower {stack.flower_url} (user operator, password in {Path(stack.run_dir) / 'flower_password'})"
        )
    else:
        lines.append("  Flower: not started (no CELERY_BROKER_URL, so no worker to watch)")
    return "\n".join(lines) + "\n"


def _report_integrity(stack: LocalStack) -> None:
    """verify_images once at start: a row whose object did not survive the restart says so at once."""
    result = stack.manage("verify_images", "--workers", "8", timeout=600, check=False)
    lines = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("All images", "Problems", "  checked", "  missing", "  corrupt", "  orphans"))
    ]
    print("verify_images at start-up:\n" + "\n".join(lines or [result.stderr.strip()[-500:]]), flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
