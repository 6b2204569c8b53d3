"""docker-compose.yml, the Dockerfile and the env examples, checked without a Docker engine."""

import os
import re
import stat

import pytest

from deploy.nginx_config import ENVSUBST_FILTER, template_variables
from tests.deploy_files import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    MINIO_ENV_EXAMPLE,
    PROJECT_ROOT,
    compose_includes,
    compose_interpolated_keys,
    dockerfile_args,
    dockerfile_stages,
    env_file_keys,
    keys_read_by_app,
    keys_read_by_deploy_files,
    load_compose,
    load_yaml,
)

REQUIRED_SERVICES = {"nginx", "web", "worker", "beat", "init", "db", "db-setup", "redis", "minio", "minio-setup"}
ONE_SHOT = {"init", "db-setup", "minio-setup"}
APP_SERVICES = {"web", "worker", "init"}


@pytest.fixture(scope="module")
def compose():
    document, base_dirs = load_compose()
    return document, base_dirs


@pytest.fixture(scope="module")
def services(compose):
    return compose[0]["services"]


def _environment(service) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return environment


def _env_files(service) -> list[str]:
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, (str, dict)) else entries
    return [entry["path"] if isinstance(entry, dict) else entry for entry in entries]


def test_compose_uses_the_specification_format_without_a_version_key():
    assert not re.search(r"^version\s*:", COMPOSE_FILE.read_text(), re.M)


def test_compose_defines_every_service_of_the_stack(services):
    assert set(services) >= REQUIRED_SERVICES


def test_observability_file_is_included_when_it_exists():
    observability = PROJECT_ROOT / "deploy" / "compose" / "observability.yml"
    included = compose_includes(load_yaml(COMPOSE_FILE))
    for path in included:
        assert path.is_file(), f"included compose file {path} is missing"
    if observability.exists():
        assert included.count(observability) == 1


def test_nginx_is_the_only_service_published_beyond_loopback(services):
    public = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            spec = str(port)
            if not spec.startswith("127.0.0.1:"):
                public.setdefault(name, []).append(spec)
    assert set(public) == {"nginx"}
    assert any(spec.endswith(":80") for spec in public["nginx"])


def test_minio_is_built_from_its_final_source_release_with_api_and_console_ports(services):
    assert services["minio"]["build"] == {"context": ".", "target": "minio"}
    for name in ("minio", "minio-setup"):
        assert services[name]["image"] == "pru_app-minio:local", name
    minio = services["minio"]
    assert "--console-address" in minio["command"] and ":9001" in minio["command"]
    published = [str(port) for port in minio["ports"]]
    assert any(port.endswith(":9000") for port in published)
    assert any(port.endswith(":9001") for port in published)


def test_the_minio_stage_builds_a_release_with_the_october_2025_security_fix():
    stages = {stage["name"]: stage for stage in dockerfile_stages()}
    build, minio = stages["minio-build"], stages["minio"]
    assert dockerfile_args()["GO_IMAGE"].startswith("golang:")
    arguments = dict(rest.split("=", 1) for instruction, rest in build["instructions"] if instruction == "ARG")
    release = re.fullmatch(r"RELEASE\.(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)", arguments["MINIO_RELEASE"]).group(1)
    # GHSA-jjjj-jwhf-8rgr (service-account session policies) is fixed from this release on.
    assert release >= "2025-10-15T17-29-55Z"
    assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", arguments["MC_RELEASE"])
    runs = " ".join(rest for instruction, rest in build["instructions"] if instruction == "RUN")
    assert "go install" in runs and '"github.com/minio/minio@${MINIO_RELEASE}"' in runs
    instructions = dict(minio["instructions"])
    assert "--from=minio-build" in instructions["COPY"]
    assert instructions["USER"].startswith("minio")
    assert "mc" in instructions["HEALTHCHECK"]


def test_data_services_keep_their_data_in_named_volumes(compose, services):
    document = compose[0]
    named = set(document.get("volumes") or {})
    mounts = {
        "db": "/var/lib/postgresql/data",
        "minio": "/data",
    }
    for service_name, target in mounts.items():
        volumes = [str(volume) for volume in services[service_name]["volumes"]]
        matching = [volume for volume in volumes if volume.split(":")[1] == target]
        assert matching, f"{service_name} has no volume at {target}"
        assert matching[0].split(":")[0] in named, f"{service_name}'s {target} is not a named volume"


def test_every_long_running_service_has_a_healthcheck(compose, services):
    # The services of docker-compose.yml itself; included files answer for their own.
    own = {name for name, base in compose[1].items() if base == PROJECT_ROOT}
    long_running = {name for name in own if services[name].get("restart") != "no"}
    assert long_running >= REQUIRED_SERVICES - ONE_SHOT
    for name in long_running:
        healthcheck = services[name].get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable")
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no"


@pytest.mark.parametrize(
    ("service", "dependency", "condition"),
    [
        ("nginx", "web", "service_healthy"),
        ("web", "init", "service_completed_successfully"),
        ("worker", "init", "service_completed_successfully"),
        ("worker", "redis", "service_healthy"),
        ("beat", "init", "service_completed_successfully"),
        ("beat", "redis", "service_healthy"),
        ("init", "db-setup", "service_completed_successfully"),
        ("db-setup", "db", "service_healthy"),
        ("init", "minio-setup", "service_completed_successfully"),
        ("minio-setup", "minio", "service_healthy"),
    ],
)
def test_start_order_is_enforced_by_depends_on_conditions(services, service, dependency, condition):
    assert services[service]["depends_on"][dependency]["condition"] == condition


def test_every_env_key_the_app_reads_is_documented_in_env_example():
    keys = keys_read_by_app()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "AWS_STORAGE_BUCKET_NAME", "LOG_FORMAT"} <= keys  # the scan works
    missing = (keys | keys_read_by_deploy_files()) - set(env_file_keys(ENV_EXAMPLE))
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_app_services_get_the_env_file_and_in_network_addresses(services):
    for name in APP_SERVICES:
        service = services[name]
        assert ".env" in _env_files(service), f"{name} does not read .env"
        environment = _environment(service)
        # Parts, not a URL: .env's DATABASE_URL (for use outside compose) is blanked.
        assert environment["DATABASE_URL"] == ""
        assert environment["DATABASE_HOST"] == "db"
        role = "OWNER" if name == "init" else "APP"
        assert environment["DATABASE_USER"].startswith(f"${{POSTGRES_{role}_USER:-")
        assert environment["DATABASE_PASSWORD"].startswith(f"${{POSTGRES_{role}_PASSWORD:?")
        assert environment["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379")


def test_compose_interpolates_only_keys_the_env_example_defines():
    defined = set(env_file_keys(ENV_EXAMPLE))
    assert compose_interpolated_keys() - defined == set()


def test_minio_root_credentials_reach_only_the_minio_services(services):
    assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(env_file_keys(ENV_EXAMPLE))
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= set(env_file_keys(MINIO_ENV_EXAMPLE))
    readers = {name for name, service in services.items() if ".env.minio" in _env_files(service)}
    assert readers == {"minio", "minio-setup"}
    for name, service in services.items():
        assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(_environment(service)), name


def test_secrets_stay_out_of_git():
    ignored = (PROJECT_ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored and ".env.minio" in ignored
    assert not (PROJECT_ROOT / ".env").exists() or ".env" in ignored


def test_nginx_service_defines_every_template_variable_and_the_same_envsubst_filter(services):
    environment = _environment(services["nginx"])
    # `$$` is compose's escape for one `$` (test_every_dollar_in_compose_files_is_escaped_or_interpolates).
    assert environment["NGINX_ENVSUBST_FILTER"].replace("$$", "$") == ENVSUBST_FILTER
    assert template_variables() <= set(environment)
    assert environment["STORAGE_UPSTREAM"] == "minio:9000"
    assert environment["NGINX_APP_UPSTREAM"] == "web:8000"


def test_every_file_compose_references_exists(compose, services):
    _, base_dirs = compose
    stage_names = {stage["name"] for stage in dockerfile_stages()}
    for name, service in services.items():
        base = base_dirs[name]
        build = service.get("build")
        if build:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            if isinstance(build, dict) and build.get("target"):
                assert build["target"] in stage_names, f"{name}: no Dockerfile stage {build['target']}"
        for env_file in _env_files(service):
            if env_file in (".env", ".env.minio"):
                continue  # made by the user from the examples (checked below)
            assert (base / env_file).is_file(), f"{name}: env_file {env_file}"
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
            # Project files are relative paths; absolute ones (the Docker socket) are the host's.
            if source.startswith("."):
                assert (base / source).exists(), f"{name}: bind mount {source}"
        command = service.get("command") or []
        if isinstance(command, list) and command and command[0].startswith("deploy/"):
            script = PROJECT_ROOT / command[0]
            assert script.is_file() and os.access(script, os.X_OK), f"{name}: {command[0]} is not an executable file"
    assert ENV_EXAMPLE.is_file() and MINIO_ENV_EXAMPLE.is_file()


def test_dockerfile_is_multi_stage_slim_python_312_non_root_with_a_healthcheck():
    stages = dockerfile_stages()
    args = dockerfile_args()
    assert len(stages) >= 2
    final = stages[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda match: args[match.group(1)], final["base"])
    assert re.fullmatch(r"python:3\.12(\.\d+)?-slim(-\w+)?", base), base
    instructions = dict(final["instructions"])
    assert instructions.get("USER") and not instructions["USER"].startswith(("root", "0")), "final stage runs as root"
    assert "HEALTHCHECK" in instructions
    assert "deploy/compose/web/start" in instructions["CMD"]
    build_steps = " ".join(
        rest for stage in stages for instruction, rest in stage["instructions"] if instruction == "RUN"
    )
    assert "requirements.txt" in build_steps
    assert "collectstatic" in build_steps


def test_every_file_the_dockerfile_copies_exists_and_is_not_dockerignored():
    ignored = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()]
    ignored = {line for line in ignored if line and not line.startswith(("#", "!"))}
    for stage in dockerfile_stages():
        for instruction, rest in stage["instructions"]:
            if instruction != "COPY" or "--from=" in rest:
                continue
            sources = [part for part in rest.split() if not part.startswith("--")][:-1]
            for source in sources:
                if source == ".":
                    continue
                assert (PROJECT_ROOT / source).exists(), f"COPY {source}"
                assert source.split("/")[0] not in ignored, f"COPY {source} is excluded by .dockerignore"
    for needed in ("manage.py", "requirements.txt", "deploy", "pru_app", "chat"):
        assert needed not in ignored


@pytest.mark.parametrize(
    "script",
    [*sorted((PROJECT_ROOT / "deploy" / "compose").glob("*/start")), PROJECT_ROOT / "deploy/compose/minio/setup"],
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_start_scripts_fail_fast_and_end_in_exec(script):
    text = re.sub(r"\\\n\s*", " ", script.read_text())  # one line per command
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text().startswith("#!")
    assert "set -o errexit -o pipefail -o nounset" in lines[0]
    assert lines[-1].startswith("exec ")


def test_the_database_runs_with_the_server_settings_the_benchmark_measures(services):
    settings_file = PROJECT_ROOT / "deploy" / "postgres" / "server-settings"
    wanted = [
        line.strip() for line in settings_file.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    command = [str(part) for part in services["db"]["command"]]
    assert command[0] == "postgres"
    assert command[1::2] == ["-c"] * len(wanted) and command[2::2] == wanted


def test_exactly_one_beat_runs_the_broadcast_sweeper(services):
    beat = services["beat"]
    assert beat["command"] == ["deploy/compose/beat/start"]
    assert "deploy" not in beat or "replicas" not in beat["deploy"]


def test_no_service_mounts_the_docker_socket(services):
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
            assert "docker.sock" not in source, f"{name} mounts the Docker socket (root on the host)"


def test_alloy_reads_dockers_log_files_read_only(services):
    mounts = [volume for volume in services["alloy"]["volumes"] if isinstance(volume, dict)]
    assert {
        "source": "/var/lib/docker/containers",
        "target": "/var/lib/docker/containers",
        "read_only": True,
        "type": "bind",
    } in mounts


def test_every_app_side_service_logs_json_files_with_its_compose_labels(compose, services):
    # What Alloy labels the lines with; a service without them would be dropped as another project's.
    # The stack itself; one-shots behind a profile of their own (backup, restore) may log anyhow.
    own = [name for name, base in compose[1].items() if base == PROJECT_ROOT and not services[name].get("profiles")]
    for name in own:
        logging = services[name].get("logging") or {}
        assert logging.get("driver") == "json-file", name
        labels = logging["options"]["labels"].split(",")
        assert {"com.docker.compose.project", "com.docker.compose.service"} <= set(labels), name
        assert logging["options"]["max-size"], name


def test_a_service_waits_for_healthy_only_on_services_that_have_a_healthcheck(services):
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        for dependency, rule in depends_on.items() if isinstance(depends_on, dict) else []:
            if rule.get("condition") == "service_healthy":
                healthcheck = services[dependency].get("healthcheck") or {}
                assert healthcheck.get("test") and not healthcheck.get("disable"), (
                    f"{name} waits forever on {dependency}"
                )


# What each image is known to contain for a healthcheck (the first word of the test command).
HEALTHCHECK_TOOLS = {
    "postgres": {"pg_isready"},
    "redis": {"redis-cli"},
    "pru_app": {"python", "celery", "kill"},  # kill: a builtin of the image's /bin/sh
    "pru_app-nginx": {"wget"},  # nginx:*-alpine: busybox
    "pru_app-minio": {"mc"},  # built in the Dockerfile's minio stage
}


def test_healthchecks_use_only_what_their_images_contain(services):
    for name, service in services.items():
        healthcheck = service.get("healthcheck") or {}
        test = healthcheck.get("test")
        if not test or healthcheck.get("disable"):
            continue
        command = test[1:] if test[0] in ("CMD", "CMD-SHELL") else test
        tool = command[0].split()[0]
        repository = service["image"].rpartition(":")[0].rpartition("/")[2]
        assert tool in HEALTHCHECK_TOOLS.get(repository, set()), f"{name}: is {tool} in {service['image']}?"


# --- Issue 20: what the compose drill's first real run found (tests/test_compose_drill.py runs them for real) ---


@pytest.mark.parametrize("path", [COMPOSE_FILE, *compose_includes(load_yaml(COMPOSE_FILE))], ids=lambda p: p.name)
def test_every_dollar_in_compose_files_is_escaped_or_interpolates(path):
    """A literal `$` is `$$` in the Compose specification; `$` starts `${NAME…}` or `$NAME` only."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        unescaped = re.sub(r"\$\$", "", line)
        if re.search(r"\$(?![{A-Za-z_])", unescaped):
            pytest.fail(f"{path.name}:{number}: a lone `$` (write `$$` for a literal one): {line.strip()}")


def test_the_app_image_is_built_by_web_alone(services):
    """One image, one build: every other service of pru_app:local runs it and never builds or pulls it."""
    app = {name: service for name, service in services.items() if service.get("image") == "pru_app:local"}
    assert {name for name, service in app.items() if "build" in service} == {"web"}
    assert services["web"]["build"] == {"context": ".", "target": "app"}
    for name, service in app.items():
        if name != "web":
            assert service.get("pull_policy") == "never", name
    minio_image = {name for name, service in services.items() if service.get("image") == "pru_app-minio:local"}
    assert {name for name in minio_image if "build" in services[name]} == {"minio"}
    assert services["minio-setup"].get("pull_policy") == "never"


def test_the_dockerfile_needs_no_frontend_image():
    """No `# syntax=` directive: the builder's built-in frontend builds the file, so no image is fetched."""
    first_lines = (PROJECT_ROOT / "Dockerfile").read_text().splitlines()[:5]
    assert not any(re.match(r"#\s*syntax\s*=", line, re.IGNORECASE) for line in first_lines)


# Oldest versions still supported on 2026-12-03: nginx's stable 1.30 (1.28 ended in April 2026),
# Go's two newest releases, 1.26 and 1.27 (1.25 ended in August 2026). Raise them as they age.
SUPPORTED_MINIMUM = {"NGINX_IMAGE": ("nginx", (1, 30)), "GO_IMAGE": ("golang", (1, 26))}


@pytest.mark.parametrize("arg", sorted(SUPPORTED_MINIMUM))
def test_base_images_are_supported_versions_pinned_by_tag(arg):
    repository, minimum = SUPPORTED_MINIMUM[arg]
    image = dockerfile_args()[arg]
    match = re.fullmatch(rf"{repository}:(\d+)\.(\d+)(?:\.\d+)?-[a-z0-9.]+(@sha256:[0-9a-f]{{64}})?", image)
    assert match, f"{arg}={image}: not {repository}:<major>.<minor>-<variant> (optionally @sha256:…)"
    assert (int(match.group(1)), int(match.group(2))) >= minimum, f"{arg}={image} is past its support"


def test_nginx_resolves_web_and_the_storage_while_it_runs(services):
    """nginx follows web and minio to a new address: names in variables, Docker's DNS, a short validity."""
    template = (PROJECT_ROOT / "deploy" / "nginx" / "default.conf.template").read_text()
    assert re.search(r"^resolver \$\{NGINX_RESOLVER\} valid=5s", template, re.MULTILINE)
    # An upstream block's servers are resolved once, at start (nginx < 1.27.3 has no `resolve`).
    assert not re.search(r"^\s*upstream\s", template, re.MULTILINE)
    proxy_passes = re.findall(r"proxy_pass\s+([^;]+);", template)
    assert proxy_passes and all(target.startswith("http://$pru_") for target in proxy_passes), proxy_passes
    assert _environment(services["nginx"])["NGINX_RESOLVER"] == "127.0.0.11"


def test_the_nginx_healthcheck_goes_through_to_web(services):
    """Unhealthy when nginx cannot reach web: the check asks web's /healthz through nginx."""
    assert services["nginx"]["healthcheck"]["test"][-1] == "http://127.0.0.1/healthz"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    nginx_stage = dockerfile.split("AS nginx", 1)[1].split("\nFROM ", 1)[0]
    assert "http://127.0.0.1/healthz" in nginx_stage.split("HEALTHCHECK", 1)[1]


def test_readme_names_the_minimum_docker_and_compose_versions():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert re.search(r"Docker Engine (\d+\.\d+)\+? or newer", readme)
    compose = re.search(r"Compose v?2\.(\d+)", readme)
    # env_file's `required:` needs Compose 2.24.
    assert compose and int(compose.group(1)) >= 24


def test_start_scripts_run_manage_py_through_logged():
    """Every line a container prints is JSON: manage.py's own output goes through `manage.py logged`."""
    for script in sorted((PROJECT_ROOT / "deploy" / "compose").glob("*/start")):
        for line in script.read_text().splitlines():
            if "manage.py" in line and not line.lstrip().startswith("#"):
                assert "manage.py logged " in line, f"{script}: {line.strip()}"


# --- Issue 18, least privilege: the app connects as a role that is no superuser (docs/stack.md) ---


def _references(service, key: str) -> bool:
    """Does any environment value of the service interpolate ${KEY…} (or $KEY)?"""
    return any(re.search(rf"(?<!\$)\$\{{?{key}\b", str(value)) for value in _environment(service).values())


def test_the_superusers_password_reaches_only_db_and_db_setup(services):
    readers = {name for name, service in services.items() if _references(service, "POSTGRES_PASSWORD")}
    assert readers == {"db", "db-setup"}
    assert _environment(services["db-setup"])["PGUSER"] == _environment(services["db"])["POSTGRES_USER"]


def test_no_app_container_receives_the_superusers_or_the_owners_password(services):
    """Every service that reads .env (which holds them, for compose to interpolate) gets them blank."""
    readers = [name for name, service in services.items() if ".env" in _env_files(service)]
    assert {"web", "worker", "broadcast-worker", "sweeper", "beat", "init", "backup", "restore"} <= set(readers)
    for name in readers:
        environment = _environment(services[name])
        assert environment.get("POSTGRES_PASSWORD") == "", f"{name} receives .env's POSTGRES_PASSWORD"
        assert environment.get("POSTGRES_OWNER_PASSWORD") == "", f"{name} receives .env's POSTGRES_OWNER_PASSWORD"
    owners = {name for name, service in services.items() if _references(service, "POSTGRES_OWNER_PASSWORD")}
    assert owners == {"init", "db-setup", "backup-database", "restore-database"}


def test_app_services_connect_as_the_apps_role_and_only_init_as_the_schemas_owner(services):
    for name, service in services.items():
        if service.get("image") != "pru_app:local":
            continue
        environment = _environment(service)
        role = "OWNER" if name == "init" else "APP"
        assert environment["DATABASE_USER"].startswith(f"${{POSTGRES_{role}_USER:-"), name
        assert environment["DATABASE_PASSWORD"].startswith(f"${{POSTGRES_{role}_PASSWORD:?"), name
    # Migration 0007 then finds the app's role granted already, not the migrating one.
    assert _environment(services["init"])["DATABASE_APP_ROLE"].startswith("${POSTGRES_APP_USER:-")
    for name in ("backup-database", "restore-database"):
        assert _environment(services[name])["PGUSER"].startswith("${POSTGRES_OWNER_USER:-"), name


def test_the_three_roles_have_names_of_their_own():
    keys = env_file_keys(ENV_EXAMPLE)
    names = [keys["POSTGRES_USER"], keys["POSTGRES_OWNER_USER"], keys["POSTGRES_APP_USER"]]
    assert len(set(names)) == 3, names
    for key in ("POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_APP_PASSWORD"):
        assert keys[key].startswith("change-me"), f"{key}: bin/init-env replaces placeholders only"


def test_db_setup_runs_the_roles_script_in_the_servers_own_image(services):
    setup = services["db-setup"]
    assert setup["image"] == services["db"]["image"]
    assert setup["entrypoint"] == ["/bin/sh", "/setup/db-setup"]
    assert "./deploy/compose/db/setup:/setup/db-setup:ro" in setup["volumes"]
    assert setup["restart"] == "no"
    script = (PROJECT_ROOT / "deploy" / "compose" / "db" / "setup").read_text()
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" in script
    assert "GRANT SET ON PARAMETER session_replication_role TO" in script
    # Rows only for the app's role: no ALL, no TRUNCATE, no REFERENCES, no TRIGGER, no CREATE on the schema.
    app_grants = re.findall(r"GRANT ([A-Z, ]+) ON (?:ALL )?(?:TABLES|SEQUENCES)", script)
    assert app_grants and set(", ".join(app_grants).split(", ")) <= {"SELECT", "INSERT", "UPDATE", "DELETE", "USAGE"}
