"""The compose drill: README's Docker flow on a real Docker engine, through nginx (pytest -m compose).

It installs and starts its own engine (Debian's dockerd, Compose v2 pinned by checksum:
tests/compose/engine.py), builds the stand-in base images that nothing can pull here
(tests/compose/standins/), builds the project's own images from its own Dockerfile, and runs
docker-compose.yml with tests/compose/drill.override.yml (moto for MinIO, the local photo API).
Then: bin/init-env, `up --build --wait`, the app's database role (no superuser, rows only), login
through nginx with the printed password, `exec web python manage.py fetch_images`, a send through
the worker (on the per-chunk integrity path), a stored image through X-Accel, web recreated on a
new address (nginx must follow), the backup profile (as the schema's owner), `down -v`.
Needs root and DRILL_MIN_FREE_GB of free disk (docs/stack.md#the-compose-drill); skips only then.
The tests run in file order on one stack (module fixture): each later step needs the earlier ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.compose

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OVERRIDE = PROJECT_ROOT / "tests" / "compose" / "drill.override.yml"
MIN_FREE_GB = float(os.environ.get("DRILL_MIN_FREE_GB", "12"))
PHOTOS = 24
CHATS = 30
FIGURES: dict[str, object] = {}


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the compose drill runs Debian's dockerd: Linux only"
    if os.geteuid() != 0:
        return "the compose drill starts its own dockerd: it needs root"
    if not shutil.which("apt-get") and not shutil.which("dockerd"):
        return "no dockerd and no apt-get to install Debian's docker.io"
    from tests.compose.engine import CACHE

    probe = CACHE if CACHE.exists() else CACHE.parent
    free_gb = shutil.disk_usage(probe).free / 1e9
    if free_gb < MIN_FREE_GB:
        return f"the compose drill needs {MIN_FREE_GB:.0f} GB free under {probe}; {free_gb:.1f} GB are"
    return None


def _free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def _copy_project(target: Path) -> None:
    """The files a clean clone has (tracked, plus new files not ignored): the compose project's directory."""
    listed = (
        subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            stdout=subprocess.PIPE,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file() or source.is_symlink():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination, follow_symlinks=False)


def _set_env(path: Path, values: dict[str, str]) -> None:
    """Replace (or add) KEY=value lines of a compose .env file."""
    lines, seen = [], set()
    for line in path.read_text().splitlines():
        key = line.partition("=")[0].strip()
        if key in values and not line.lstrip().startswith("#"):
            lines.append(f"{key}={values[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in values.items() if key not in seen]
    path.write_text("\n".join(lines) + "\n")


class Stack:
    """docker compose on the drill's engine, in a copy of the project, with the drill's override."""

    def __init__(self, engine, directory: Path):
        self.engine = engine
        self.directory = directory
        self.overrides = [OVERRIDE]
        self.http_port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.password = ""

    def compose(self, *args, check=True, timeout=900, env=None, profiles=()):
        profile_args = [arg for profile in profiles for arg in ("--profile", profile)]
        return self.engine.docker(
            "compose",
            "--project-directory",
            str(self.directory),
            "-f",
            str(self.directory / "docker-compose.yml"),
            *(argument for path in self.overrides for argument in ("-f", str(path))),
            *profile_args,
            *args,
            check=check,
            timeout=timeout,
            env=env,
        )

    def manage(self, *args, timeout=600) -> str:
        return self.compose("exec", "-T", "web", "python", "manage.py", *args, timeout=timeout).stdout

    def shell(self, code: str) -> str:
        """Django's shell in web; the last line printed is returned."""
        output = self.manage("shell", "-c", code)
        lines = [line for line in output.splitlines() if line.strip() and not line.lstrip().startswith("{")]
        return lines[-1] if lines else ""

    def config(self, *profiles) -> dict:
        return json.loads(self.compose("config", "--format", "json", profiles=profiles).stdout)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def address(self, container: str) -> str:
        return self.engine.docker(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container
        ).stdout.split()[0]

    def network(self, container: str) -> str:
        return self.engine.docker(
            "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}", container
        ).stdout.split()[0]


def _timing_override(stack: Stack) -> Path:
    """More time for the healthchecks of every service of the app image (timing only, not what they check).

    On this 2-core machine, while other sessions kept it busy (load 10-25), a Gunicorn worker's first
    /readyz took 10 s and a Celery worker's check (a whole Celery + Django CLI) 30 s: past the
    product's timeouts, so `up --wait` failed on timing alone. Generated from `compose config`, so any
    service another change adds gets the same.
    """
    config = stack.config("backup")
    services = {
        name: {"healthcheck": {"timeout": "60s", "start_period": "300s"}}
        for name, service in config["services"].items()
        if service.get("image") == "pru_app:local" and not (service.get("healthcheck") or {}).get("disable")
    }
    path = stack.directory.parent / "drill.timing.yml"
    path.write_text(json.dumps({"services": services}, indent=2) + "\n")  # JSON is YAML
    return path


def _app_services(stack: Stack, *profiles) -> list[str]:
    config = stack.config(*profiles)
    return [name for name, service in config["services"].items() if service.get("image") == "pru_app:local"]


def _stand_in_images(stack: Stack) -> dict[str, str]:
    """Every image the stack pulls (not builds), and the Dockerfile's base images: image → stand-in name."""
    from tests.compose.standins import DEVSERVERS_IMAGE, REPLACES

    config = stack.config("backup")
    wanted = {}
    built = {service.get("image") for service in config["services"].values() if "build" in service}
    for name, service in config["services"].items():
        image = service.get("image", "")
        if not image or image in built or image == DEVSERVERS_IMAGE:
            continue
        repository = image.rsplit("/", 1)[-1].split(":")[0]
        if repository not in REPLACES:
            pytest.fail(f"service {name}: no stand-in for image {image} (tests/compose/standins)")
        wanted[image] = REPLACES[repository]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for arg, standin in (("PYTHON_IMAGE", "python"), ("NGINX_IMAGE", "nginx")):
        match = re.search(rf"^ARG {arg}=(\S+)", dockerfile, re.MULTILINE)
        assert match, f"Dockerfile: no ARG {arg}"
        wanted[match.group(1)] = standin
    return wanted


@pytest.fixture(scope="module")
def stack():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import fcntl

    from tests.compose.engine import CACHE, Engine, install_packages
    from tests.compose.standins import StandIns

    CACHE.mkdir(parents=True, exist_ok=True)
    lock = (CACHE / "drill.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one drill at a time per machine: one socket, one data root
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pru-drill-"))
    install_packages()
    engine = Engine(work)
    engine.start()
    FIGURES["storage_driver"] = engine.driver
    FIGURES["engine_start_s"] = round(time.monotonic() - started, 1)
    project = work / "project"
    _copy_project(project)
    instance = Stack(engine, project)
    try:
        # README: bin/init-env writes .env and .env.minio and prints the admin password once.
        printed = subprocess.run(
            [sys.executable, str(project / "bin" / "init-env")],
            cwd=project,
            check=True,
            text=True,
            stdout=subprocess.PIPE,
        ).stdout
        match = re.search(r"Superuser '([^']+)', password: (\S+)", printed)
        assert match, f"bin/init-env printed no password:\n{printed}"
        instance.username, instance.password = match.group(1), match.group(2)
        # The drill's machine: a free port for nginx, the local photo API, every send through the workers.
        _set_env(
            project / ".env",
            {
                "NGINX_HTTP_PORT": str(instance.http_port),
                "MINIO_API_PORT": str(_free_port()),
                "MINIO_CONSOLE_PORT": str(_free_port()),
                "IMAGE_API_URL": "http://photo-api:8100/v1/sample-data/photos",
                "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
                "BROADCAST_QUEUE_FROM_MESSAGES": "1",
                "BROADCAST_CHUNK_MESSAGES": "100",
            },
        )
        instance.overrides.append(_timing_override(instance))
        (project / "backups").mkdir()
        os.chown(project / "backups", 10001, 10001)  # docs/backup.md: the app user writes there

        step = time.monotonic()
        standins = StandIns(engine, work)
        standins.build_all(_stand_in_images(instance))
        FIGURES["standins_s"] = round(time.monotonic() - step, 1)
        FIGURES["standin_timings_s"] = standins.timings

        step = time.monotonic()
        instance.build_started = datetime.now(UTC)
        up = instance.compose(
            "up", "--build", "--wait", "--wait-timeout", "600", "--quiet-pull", timeout=1800, check=False
        )
        FIGURES["up_build_wait_s"] = round(time.monotonic() - step, 1)
        if up.returncode != 0:
            logs = instance.compose("logs", "--no-color", "--tail", "40", check=False).stdout
            pytest.fail(
                f"compose up --build --wait exited {up.returncode}:\n{up.stdout[-5000:]}\n--- logs\n{logs[-8000:]}"
            )
        instance.up_output = up.stdout
        FIGURES["disk_bytes_after_up"] = engine.disk_usage_bytes()
        yield instance
    finally:
        try:
            instance.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False, profiles=("backup",))
            FIGURES["disk_bytes_after"] = engine.disk_usage_bytes()
            # Leave the stand-ins and the build cache for the next run; drop what this run superseded.
            engine.docker("image", "prune", "--force", check=False)
            engine.docker("builder", "prune", "--force", "--keep-storage", "6GB", check=False)
        finally:
            engine.stop()
            FIGURES["total_s"] = round(time.monotonic() - started, 1)
            print("\ncompose drill figures: " + json.dumps(FIGURES), file=sys.stderr)
            summary = os.environ.get("CI_ARTIFACTS_DIR")
            if summary:
                Path(summary, "compose-drill.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
            shutil.rmtree(work, ignore_errors=True)
            lock.close()


def _login(stack: Stack) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{stack.base_url}/admin/login/", timeout=30)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{stack.base_url}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": stack.username, "password": stack.password, "next": "/admin/"},
        headers={"Referer": f"{stack.base_url}/admin/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/", (
        answer.status_code,
        answer.text[:800],
    )
    return session


def test_the_app_image_is_built_once(stack):
    """Defect 5: web builds pru_app:local; every other app service runs that image, and no copy is left."""
    config = stack.config("backup")
    app_services = [name for name, service in config["services"].items() if service.get("image") == "pru_app:local"]
    builders = [name for name in app_services if "build" in config["services"][name]]
    assert builders == ["web"], f"services that build pru_app:local: {builders}"
    image_id = stack.engine.docker("image", "inspect", "--format", "{{.Id}}", "pru_app:local").stdout.strip()
    for name in app_services:
        container = stack.container(name)
        if container:
            assert stack.engine.docker("inspect", "--format", "{{.Image}}", container).stdout.strip() == image_id, name
    # Untagged images this run's build made (an earlier run's pru_app:local, superseded, is older).
    dangling = stack.engine.docker("images", "--filter", "dangling=true", "--quiet", "--no-trunc").stdout.split()
    made_now = []
    for image in dangling:
        created = stack.engine.docker("image", "inspect", "--format", "{{.Created}}", image).stdout.strip()
        if (
            datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", created.replace("Z", "+00:00")))
            >= stack.build_started
        ):
            made_now.append(image)
    assert not made_now, f"untagged images left by this build: {made_now}"


# What the app's role must not do, each tried in web and rolled back were it allowed.
FORBIDDEN = {
    "create_role": "CREATE ROLE drill_intruder",
    "alter_system": "ALTER SYSTEM SET work_mem = '1GB'",
    "read_pg_authid": "SELECT rolpassword FROM pg_authid",
    "create_table": "CREATE TABLE drill_intruder (id int)",
    "drop_table": "DROP TABLE chat_message",
    "disable_triggers": "ALTER TABLE chat_message DISABLE TRIGGER USER",
}


# Run by Django's shell in web: the role's attributes, each FORBIDDEN statement's error, the broadcasts'
# path, and which environment variables hold a WITHHELD password.
ROLE_CHECKS = """
import json, os
from contextlib import nullcontext
from django.db import connection, transaction
from chat.broadcasts.inserts import may_skip_row_checks
checks = {}
with connection.cursor() as cursor:
    cursor.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
        " FROM pg_roles WHERE rolname = current_user"
    )
    checks["role"] = cursor.fetchone()
    cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
    checks["database_owner"] = cursor.fetchone()[0]
class Allowed(Exception):
    pass
for name, statement in FORBIDDEN.items():
    try:
        # Rolled back if it was allowed after all (ALTER SYSTEM cannot run in a transaction).
        with transaction.atomic() if name != "alter_system" else nullcontext():
            with connection.cursor() as cursor:
                cursor.execute(statement)
            raise Allowed
    except Allowed:
        checks[name] = "allowed"
    except Exception as error:
        checks[name] = type(error.__cause__ or error).__name__
checks["replica_path"] = may_skip_row_checks()
checks["withheld_in_env"] = sorted(key for key, value in os.environ.items() if value in WITHHELD)
print("checks", json.dumps(checks))
"""


def test_the_app_connects_as_a_role_without_power_beyond_its_rows(stack):
    """Issue 18: web's role is no superuser, owns nothing, and holds neither the superuser's nor the owner's password."""
    env = {}
    for line in (stack.directory / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key.strip()] = value
    withheld = {env.get("POSTGRES_PASSWORD"), env.get("POSTGRES_OWNER_PASSWORD")} - {None, ""}
    assert env.get("POSTGRES_APP_PASSWORD") not in withheld
    found = stack.shell(f"FORBIDDEN = {FORBIDDEN!r}\nWITHHELD = {sorted(withheld)!r}\n" + ROLE_CHECKS)
    checks = json.loads(found.partition("checks ")[2])
    assert checks["role"] == [env.get("POSTGRES_APP_USER"), False, False, False, False, False], checks
    assert checks["database_owner"] == env.get("POSTGRES_OWNER_USER") != env.get("POSTGRES_APP_USER"), checks
    assert {name: checks[name] for name in FORBIDDEN} == dict.fromkeys(FORBIDDEN, "InsufficientPrivilege"), checks
    # GRANT SET ON PARAMETER session_replication_role: broadcasts check integrity per chunk.
    assert checks["replica_path"] is True
    assert checks["withheld_in_env"] == []
    setup_log = stack.compose("logs", "--no-color", "--no-log-prefix", "db-setup").stdout
    assert f"app role {env.get('POSTGRES_APP_USER')}: superuser f" in setup_log, setup_log[-2000:]


def test_login_through_nginx_with_the_printed_password(stack):
    session = _login(stack)
    page = session.get(f"{stack.base_url}/admin/", timeout=30)
    assert page.status_code == 200 and "Site administration" in page.text
    assert page.headers.get("X-Request-ID")
    static = session.get(f"{stack.base_url}/static/admin/css/base.css", timeout=30)
    assert static.status_code == 200 and "text/css" in static.headers["Content-Type"]


def test_fetch_images_stores_every_photo(stack):
    started = time.monotonic()
    output = stack.manage("fetch_images", "--no-progress")
    FIGURES["fetch_images_s"] = round(time.monotonic() - started, 1)
    stored = stack.shell("from chat.models import Image; print(Image.objects.filter(status='stored').count())")
    assert stored == str(PHOTOS), output[-3000:]


def test_a_send_goes_through_the_worker(stack):
    stack.shell(
        "from django.contrib.auth import get_user_model; from chat.models import Chat\n"
        f"for n in range({CHATS}):\n"
        "    user, _ = get_user_model().objects.get_or_create(username=f'drill-recipient-{n}')\n"
        "    Chat.objects.get_or_create(user=user)\n"
        "print(Chat.objects.count())"
    )
    session = _login(stack)
    changelist = session.get(f"{stack.base_url}/admin/chat/image/", timeout=30)
    assert changelist.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', changelist.text).group(1)
    ids = stack.shell(
        "from chat.models import Image; print(','.join(map(str, Image.objects.filter(status='stored').values_list('pk', flat=True))))"
    )
    answer = session.post(
        f"{stack.base_url}/admin/chat/image/",
        data={
            "csrfmiddlewaretoken": token,
            "action": "send_to_all_chats",
            "_selected_action": ids.split(","),
            "index": "0",
        },
        headers={"Referer": f"{stack.base_url}/admin/chat/image/"},
        timeout=60,
    )
    assert answer.status_code == 200 and "queued for the workers" in answer.text, answer.text[-2000:]
    started = time.monotonic()
    deadline = started + 180
    status = ""
    while time.monotonic() < deadline:
        status = stack.shell(
            "from chat.models import Broadcast, Message; b = Broadcast.objects.latest('pk'); "
            "print(b.status, b.created_count, Message.objects.count())"
        )
        if not status.startswith(("queued", "running")):
            break
        time.sleep(2)
    FIGURES["send_s"] = round(time.monotonic() - started, 1)
    chats = int(stack.shell("from chat.models import Chat; print(Chat.objects.count())"))
    assert status == f"succeeded {PHOTOS * chats} {PHOTOS * chats}", status
    # The chunks ran on a Celery worker (whichever service consumes their queue), not in web.
    workers = [name for name in _app_services(stack) if name not in ("web", "init", "beat")]
    worker_logs = stack.compose("logs", "--no-color", "--no-log-prefix", *workers).stdout
    assert "broadcast.chunk_finished" in worker_logs
    # The app's role may set session_replication_role: no chunk fell back to row-wise checks.
    assert "broadcast.row_checks" not in worker_logs
    assert "broadcast.chunk_finished" not in stack.compose("logs", "--no-color", "--no-log-prefix", "web").stdout


def test_a_stored_image_comes_through_x_accel(stack):
    session = _login(stack)
    pk = stack.shell("from chat.models import Image; print(Image.objects.filter(status='stored').first().pk)")
    answer = session.get(f"{stack.base_url}/stored-images/{pk}", timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.content[:3] == b"\xff\xd8\xff" and answer.headers["Content-Type"] == "image/jpeg"
    # nginx's internal storage location answered (Django only sent X-Accel-Redirect).
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "X-Accel-Redirect" not in answer.headers
    assert session.get(f"{stack.base_url}/internal-storage/x", timeout=30).status_code == 404
    assert requests.get(f"{stack.base_url}/stored-images/{pk}", timeout=30, allow_redirects=False).status_code in (
        302,
        403,
    )


def _nginx_healthcheck(stack: Stack) -> int:
    """Run nginx's compose healthcheck command in its container: its exit status."""
    test = stack.config()["services"]["nginx"]["healthcheck"]["test"]
    command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return stack.compose("exec", "-T", "nginx", *command, check=False, timeout=60).returncode


def test_nginx_follows_web_to_a_new_address(stack):
    """Defect 1: web recreated on another address; nginx serves it with nobody restarting nginx."""
    old = stack.container("web")
    old_address = stack.address(old)
    network = stack.network(old)
    assert _nginx_healthcheck(stack) == 0
    stack.compose("stop", "web", timeout=120)
    # Its healthcheck fails while it cannot reach web.
    assert _nginx_healthcheck(stack) != 0, "nginx's healthcheck passes while web is down"
    # Throwaway containers until one holds web's old address, so web must come back on another.
    squatters = []
    try:
        for _ in range(20):
            squatter = stack.engine.docker(
                "run",
                "--detach",
                "--rm",
                "--network",
                network,
                "--entrypoint",
                "sleep",
                "debian:bookworm-slim",
                "infinity",
            ).stdout.strip()
            squatters.append(squatter)
            if stack.address(squatter) == old_address:
                break
        else:
            pytest.fail(f"no throwaway container got web's old address {old_address}")
        stack.compose("up", "--detach", "--force-recreate", "--no-deps", "--wait", "web", timeout=300)
        new_address = stack.address(stack.container("web"))
        assert new_address != old_address
        deadline = time.monotonic() + 30
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(requests.get(f"{stack.base_url}/admin/login/", timeout=10).status_code)
            if statuses[-3:] == [200, 200, 200]:
                break
            time.sleep(1)
        assert statuses[-3:] == [200, 200, 200], f"through nginx after web moved to {new_address}: {statuses}"
        assert _nginx_healthcheck(stack) == 0
    finally:
        for squatter in squatters:
            stack.engine.docker("rm", "--force", squatter, check=False)


def test_every_app_log_line_is_json(stack):
    """Defect 4: README's "one JSON object per line" for every service of the app image, init included."""
    config = stack.config()
    services = [name for name, service in config["services"].items() if service.get("image") == "pru_app:local"]
    output = stack.compose("logs", "--no-color", "--no-log-prefix", *services).stdout
    bad = []
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    assert not bad, f"{len(bad)} lines of {services} are not JSON objects, e.g.:\n" + "\n".join(bad[:15])
    assert len(output.splitlines()) > 20


def test_the_backup_profile_writes_a_complete_backup(stack):
    name = "drill-backup"
    started = time.monotonic()
    stack.compose("run", "--rm", "backup", env={"BACKUP_NAME": name}, profiles=("backup",), timeout=600)
    FIGURES["backup_s"] = round(time.monotonic() - started, 1)
    folder = stack.directory / "backups" / name
    manifest = json.loads((folder / "backup.json").read_text())
    assert (folder / "database.dump").stat().st_size > 0
    assert manifest, manifest


def test_down_removes_the_volumes(stack):
    stack.compose("down", "-v", "--timeout", "30", profiles=("backup",), timeout=300)
    assert not stack.compose("ps", "-a", "-q").stdout.strip()
    volumes = stack.engine.docker(
        "volume", "ls", "--quiet", "--filter", "label=com.docker.compose.project=pru_app"
    ).stdout
    assert not volumes.strip(), volumes
    FIGURES["disk_bytes_peak_estimate"] = stack.engine.disk_usage_bytes()
