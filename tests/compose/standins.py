"""Stand-in base images for the compose drill, built on this machine because nothing can be pulled.

Each one's build files are under tests/compose/standins/<name>/, with a comment saying what it stands
in for and how it differs. An image is rebuilt only when the hash of its inputs (its build files,
its parent's hash, and for python the machine's CPython and CA certificates) changes: the hash is
the image's label `pru.drill.inputs`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.compose.engine import CACHE, DrillError, Engine, run

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
PROJECT_ROOT = HERE.parent.parent
MACHINE_CA_DIR = Path("/usr/local/share/ca-certificates")
LABEL = "pru.drill.inputs"
# What each stand-in replaces: the repository part of an image name (any tag).
REPLACES = {"debian": "debian", "python": "python", "nginx": "nginx", "postgres": "postgres", "redis": "redis"}
DEVSERVERS_IMAGE = "pru-drill-devservers:local"
SKIPPED_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3"}


def tree_hash(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def machine_python() -> Path:
    """A CPython 3.12 prefix on this machine (pyenv's, or the one python3.12 on PATH belongs to)."""
    candidates = sorted(Path("~/.pyenv/versions").expanduser().glob("3.12.*"), reverse=True)
    if sys.version_info[:2] == (3, 12):
        candidates.insert(0, Path(sys.base_prefix))
    which = shutil.which("python3.12")
    if which:
        candidates.append(Path(which).resolve().parent.parent)
    for prefix in candidates:
        if (prefix / "bin" / "python3.12").exists() and (prefix / "lib" / "python3.12" / "venv").is_dir():
            return prefix
    raise DrillError("no CPython 3.12 on this machine to put in the python:3.12-slim-bookworm stand-in")


class StandIns:
    """Builds (or finds, by input hash) the stand-ins under the names the project's files expect."""

    def __init__(self, engine: Engine, work_dir: Path):
        self.engine = engine
        self.work_dir = work_dir
        self.built: dict[str, str] = {}  # image name → inputs hash
        self.timings: dict[str, float] = {}

    def _current(self, image: str) -> str:
        completed = self.engine.docker(
            "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', image, check=False
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    def _build(self, image: str, context: Path, inputs: str) -> None:
        # The classic builder: no buildx plugin exists here, and these files need nothing BuildKit has.
        self.engine.docker(
            "build",
            "--network",
            "host",
            "--quiet",
            "--label",
            f"{LABEL}={inputs}",
            "--tag",
            image,
            str(context),
            env={"DOCKER_BUILDKIT": "0"},
            timeout=1200,
        )

    def debian(self, image: str) -> str:
        script = STANDINS / "debian" / "build-rootfs"
        inputs = tree_hash(STANDINS / "debian")
        if self._current(image) != inputs:
            tarball = CACHE / f"debian-bookworm-minbase-{inputs}.tar"
            if not tarball.exists():
                run([str(script), str(tarball)], timeout=1500)
            self.engine.docker(
                "import",
                "--change",
                'CMD ["bash"]',
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                f"LABEL {LABEL}={inputs}",
                str(tarball),
                image,
                timeout=900,
            )
        return inputs

    def python(self, image: str, parent: str) -> str:
        prefix = machine_python()
        certificates = sorted(MACHINE_CA_DIR.rglob("*.crt")) if MACHINE_CA_DIR.is_dir() else []
        extra = parent + str(prefix) + (prefix / "bin" / "python3.12").resolve().read_bytes()[:4096].hex()
        extra += "".join(path.read_text(errors="replace") for path in certificates)
        inputs = tree_hash(STANDINS / "python", extra=extra)
        if self._current(image) != inputs:
            context = self.work_dir / "python-context"
            shutil.rmtree(context, ignore_errors=True)
            shutil.copytree(STANDINS / "python", context)
            (context / "machine-ca").mkdir()
            for path in certificates:
                shutil.copy2(path, context / "machine-ca" / path.name)

            def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
                parts = Path(member.name).parts
                # Not in the official slim image either: CPython's own test suite, IDLE, Tk, caches.
                if "__pycache__" in parts or (len(parts) > 2 and parts[0] == "lib" and parts[2] in SKIPPED_STDLIB):
                    return None
                return member

            with tarfile.open(context / "python.tar", "w") as archive:
                for name in ("bin", "lib", "include", "share"):
                    if (prefix / name).exists():
                        archive.add(prefix / name, arcname=name, filter=keep)
            self._build(image, context, inputs)
        return inputs

    def from_directory(self, name: str, image: str, parent: str, extra_files: dict[str, Path] | None = None) -> str:
        extra = parent + "".join(tree_hash(path) for path in (extra_files or {}).values())
        inputs = tree_hash(STANDINS / name, extra=extra)
        if self._current(image) != inputs:
            context = self.work_dir / f"{name}-context"
            shutil.rmtree(context, ignore_errors=True)
            shutil.copytree(STANDINS / name, context)
            for target, source in (extra_files or {}).items():
                if source.is_dir():
                    shutil.copytree(source, context / target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(source, context / target)
            self._build(image, context, inputs)
        return inputs

    def devservers_constraints(self) -> Path:
        """requirements-dev.txt's pins without its hashes: a constraints file for moto[server] and Pillow."""
        lines = []
        for line in (PROJECT_ROOT / "requirements-dev.txt").read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-]+(\[[^\]]*\])?==[^\s\\;]+)", line)
            if match:
                lines.append(re.sub(r"\[[^\]]*\]", "", match.group(1)))
        path = self.work_dir / "constraints.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def build_all(self, images: dict[str, str]) -> None:
        """images: image name → stand-in name (e.g. {"nginx:1.30-alpine": "nginx"}); debian and python always."""

        def timed(name, build, *args, **kwargs):
            started = time.monotonic()
            result = build(*args, **kwargs)
            self.timings[name] = round(self.timings.get(name, 0) + time.monotonic() - started, 1)
            return result

        base = timed("debian", self.debian, "debian:bookworm-slim")
        # Independent builds in parallel: most of their time is spent waiting on the mirrors.
        with ThreadPoolExecutor(max_workers=4) as pool:
            python_future = pool.submit(timed, "python", self.python, "python:3.12-slim-bookworm", base)
            futures = [python_future]
            for image, name in images.items():
                if name not in ("debian", "python"):
                    futures.append(pool.submit(timed, name, self.from_directory, name, image, base))
            python = python_future.result()
            futures.append(
                pool.submit(
                    timed,
                    "devservers",
                    self.from_directory,
                    "devservers",
                    DEVSERVERS_IMAGE,
                    python,
                    {"devservers": PROJECT_ROOT / "devservers", "constraints.txt": self.devservers_constraints()},
                )
            )
            for future in futures:
                future.result()
        for image, name in images.items():
            if name == "debian":
                self.engine.docker("tag", "debian:bookworm-slim", image)
            elif name == "python":
                self.engine.docker("tag", "python:3.12-slim-bookworm", image)
