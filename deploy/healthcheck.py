"""Container healthcheck: exit 0 when the URL answers 200 (stdlib only, no Django import)."""

import os
import sys
import urllib.error
import urllib.request


def main(url: str) -> int:
    # Django validates Host against DJANGO_ALLOWED_HOSTS; the probe uses the first allowed name.
    allowed = [host.strip() for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host.strip()]
    host = next((name for name in allowed if not name.startswith(".") and name != "*"), "localhost")
    request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310 (the http:// URL compose passes)
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"healthcheck: {url} failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/healthz"))
