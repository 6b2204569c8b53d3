"""Running manage.py in a child process with a controlled environment."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, env_overrides, drop=(), timeout=60):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "AWS_", "SENTRY_", "IMAGE_"))
    }
    env.update(env_overrides)
    for key in drop:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
