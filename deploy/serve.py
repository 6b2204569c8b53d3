"""bin/serve: the no-Docker stack in the foreground until Ctrl-C or SIGTERM."""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from deploy.local_stack import PROJECT_ROOT, LocalStack


def main(argv=None) -> int:
    """bin/serve: run the stack in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description="nginx + Gunicorn + Django (+ an S3 server) on loopback, without Docker.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)), help="nginx's port (default 8000)")
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run" / "serve")
    args = parser.parse_args(argv)

    # SIGTERM (a service manager, `kill`) stops the stack the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    stack = LocalStack(
        port=args.port, run_dir=args.run_dir, echo_logs=True,
        overrides={"LOG_FORMAT": os.environ.get("LOG_FORMAT", "console")},
    )
    try:
        stack.start()
        storage = stack.env["AWS_S3_ENDPOINT_URL"] + (" (moto, in memory)" if stack.s3_server else "")
        print(
            f"\npru_app is up: {stack.url}/admin/  (health {stack.url}/healthz, readiness {stack.url}/readyz)\n"
            f"  Gunicorn {stack.gunicorn_url}, storage {storage}, bucket {stack.env['AWS_STORAGE_BUCKET_NAME']}\n"
            f"  database {stack.env.get('DATABASE_URL') or 'SQLite (db.sqlite3)'}; Ctrl-C stops everything.\n",
            flush=True,
        )
        while stack.all_running():
            time.sleep(0.5)
        print("A part of the stack exited; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping nginx, Gunicorn and the S3 server…", flush=True)
        return 0
    finally:
        stack.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
