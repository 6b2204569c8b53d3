"""bin/serve: the no-Docker stack in the foreground until Ctrl-C or SIGTERM."""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from deploy.local_stack import PROJECT_ROOT, LocalStack
from devservers.photo_api import PhotoApiServer
from devservers.pictures import DEMO_WIDTH
from devservers.s3 import S3Server

# The demo photo API keeps one port: the rows' source URLs name it, and a repair after a
# restart downloads from the same address.
DEMO_PHOTO_API_PORT = 8100
DEMO_PHOTOS = 132


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
    args = parser.parse_args(argv)

    # SIGTERM (a service manager, `kill`) stops the stack the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    overrides = {"LOG_FORMAT": os.environ.get("LOG_FORMAT", "console")}
    photo_api = None
    if args.demo:
        photo_api = PhotoApiServer(photos=DEMO_PHOTOS, picture_width=DEMO_WIDTH, port=args.demo_port).start()
        # The local API is on loopback, which the SSRF filter refuses unless told: demo only.
        overrides |= {"IMAGE_API_URL": photo_api.url, "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true"}
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
        _report_integrity(stack)
        print(
            f"\npru_app is up: {stack.url}/admin/  (health {stack.url}/healthz, readiness {stack.url}/readyz)\n"
            f"  Gunicorn {stack.gunicorn_url}, storage {stack.storage_description()}\n"
            f"  database {stack.env.get('DATABASE_URL') or 'SQLite (db.sqlite3)'}\n"
            + (f"  photo API (demo) {photo_api.url}\n" if photo_api else "")
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
        stack.stop()
        if photo_api is not None:
            photo_api.stop()


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
