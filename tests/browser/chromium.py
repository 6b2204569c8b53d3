"""How the browser tests start Debian's chromium, and where their screenshots go ($CI_ARTIFACTS_DIR)."""

import os
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("CI_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "ci-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
