"""Known vulnerabilities of every locked package, from PyPI's project pages (/pypi/NAME/json).

bin/audit-deps runs it where pip-audit's own sources (PyPI's per-release JSON API, OSV) do not
answer. A project page lists the advisories that affect the project's newest release, with the
versions that fix them. So:

- a pin at the newest release is audited in full: any advisory listed affects it;
- a pin behind the newest release is checked against the advisories of the newest release (one
  that no release fixes, or that a release after the pin fixes, is reported), but an advisory
  fixed between the pin and the newest release is not visible here: such pins are listed as
  "behind", so that upgrading them (or an audit from a full advisory source) closes the gap.

Exit status: 0 no known vulnerability; 1 one or more; 2 PyPI did not answer (nothing audited;
PIP_AUDIT_OFFLINE_OK=1 turns that into a warning and 0).
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# PYPI_PROJECT_URL points the audit at a mirror (or, in its tests, a local stand-in).
PROJECT_URL = os.environ.get("PYPI_PROJECT_URL", "https://pypi.org/pypi/{name}/json")


def locked_pins(paths: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in paths:
        with open(path) as lock:
            for line in lock:
                match = PIN.match(line)
                if match:
                    name, version = canonicalize_name(match.group(1)), match.group(2)
                    if pins.setdefault(name, version) != version:
                        sys.exit(f"audit: {name} is pinned to {pins[name]} and {version} in {', '.join(paths)}")
    return pins


def project_page(name: str, *, timeout: float, attempts: int = 3) -> dict | None:
    # PyPI over https, or the mirror PYPI_PROJECT_URL names. A dropped connection or a timeout through
    # the egress proxy is tried again (after 1 s, then 3 s); only a page that never answers is "no answer".
    request = urllib.request.Request(PROJECT_URL.format(name=name), headers={"Accept": "application/json"})  # noqa: S310
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 429:
                return None  # an answer: the page is not there
        except (OSError, ValueError):
            pass
        if attempt + 1 < attempts:
            time.sleep(1 + 2 * attempt)
    return None


def affects(advisory: dict, pin: Version, newest: Version) -> bool:
    """Whether an advisory of the newest release affects the pin too (no fix, or a fix after the pin)."""
    if advisory.get("withdrawn"):
        return False
    fixes = []
    for text in advisory.get("fixed_in") or []:
        try:
            fixes.append(Version(text))
        except InvalidVersion:
            continue
    return pin >= newest or not fixes or all(fix > pin for fix in fixes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="+")
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--ignore", action="append", default=[], help="an advisory id accepted on purpose")
    arguments = parser.parse_args()
    ignored_ids = set(arguments.ignore)
    pins = locked_pins(arguments.locks)
    with ThreadPoolExecutor(max_workers=16) as pool:
        pages = dict(zip(pins, pool.map(lambda name: project_page(name, timeout=arguments.timeout), pins), strict=True))

    unanswered = sorted(name for name, page in pages.items() if page is None)
    if len(unanswered) > len(pins) // 10:
        print(f"audit: PyPI did not answer for {len(unanswered)} of {len(pins)} projects", file=sys.stderr)
        if os.environ.get("PIP_AUDIT_OFFLINE_OK") == "1":
            print("audit: WARNING: dependencies NOT audited (PIP_AUDIT_OFFLINE_OK=1)", file=sys.stderr)
            return 0
        return 2

    found, behind = [], []
    for name, version in sorted(pins.items()):
        page = pages[name]
        if page is None:
            continue
        pin, newest = Version(version), Version(page["info"]["version"])
        if pin < newest:
            behind.append(f"{name} {version} (newest {newest})")
        for advisory in page.get("vulnerabilities") or []:
            ids = {advisory.get("id"), *(advisory.get("aliases") or [])}
            if ids & ignored_ids or not affects(advisory, pin, newest):
                continue
            fixed = ", ".join(advisory.get("fixed_in") or []) or "no fixed release"
            found.append(f"{name} {version}: {advisory.get('id')} ({fixed}) {advisory.get('link', '')}".rstrip())

    audited = len(pins) - len(unanswered)
    print(f"audit: {audited} locked packages checked against PyPI's advisories; {len(found)} known vulnerabilities")
    for line in found:
        print(f"  VULNERABLE {line}")
    if unanswered:
        print(f"audit: no answer for {', '.join(unanswered)}", file=sys.stderr)
        found.append("unanswered")
    if behind:
        print(
            f"audit: {len(behind)} pins behind their newest release (advisories fixed in between are not visible here):"
        )
        for line in behind:
            print(f"  behind {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
