"""Readers for the deployment files, shared by the static tests: compose (with includes), Dockerfile, env keys."""

import re
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
MINIO_ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "compose" / "minio.env.example"

# env.str("KEY", ...), env.bool(\n "KEY"), env("KEY"), env_secret("KEY"), os.environ.get("KEY"), os.getenv("KEY"), os.environ["KEY"]
_ENV_READ = re.compile(
    r"""(?:\benv(?:\.\w+|_secret)?\(\s*|os\.environ\.get\(\s*|os\.getenv\(\s*|os\.environ\[\s*)["']([A-Z][A-Z0-9_]*)["']"""
)
_SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?=+][^}]*)?\}")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)")


class StrictLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, as Compose does (PyYAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [key.value for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def load_compose() -> tuple[dict, dict[str, Path]]:
    """docker-compose.yml with its `include`d files merged in; each service's base directory."""
    document = load_yaml(COMPOSE_FILE)
    services = dict(document.get("services", {}))
    base_dirs = dict.fromkeys(services, PROJECT_ROOT)
    for included in compose_includes(document):
        # Compose resolves an included file's relative paths from that file's own directory.
        child = load_yaml(included) or {}
        for name, service in (child.get("services") or {}).items():
            assert name not in services, f"{included} redefines service {name}"
            services[name] = service
            base_dirs[name] = included.parent
        document.setdefault("volumes", {}).update(child.get("volumes") or {})
    document["services"] = services
    return document, base_dirs


def compose_includes(document: dict) -> list[Path]:
    paths = []
    for entry in document.get("include") or []:
        if isinstance(entry, dict):
            entry_paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
        else:
            entry_paths = [entry]
        paths.extend(PROJECT_ROOT / path for path in entry_paths)
    return paths


def env_file_keys(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blanks skipped)."""
    keys = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys[key.strip()] = value
    return keys


def keys_read_by_app() -> set[str]:
    """Every environment key the Django project reads: settings and any non-test module."""
    sources = [path for path in (PROJECT_ROOT / "pru_app").glob("*.py") if path.name != "settings_test.py"]
    for package in ("chat", "core"):
        sources += [path for path in (PROJECT_ROOT / package).rglob("*.py") if "tests" not in path.parts]
    keys = set()
    for path in sources:
        keys.update(_ENV_READ.findall(path.read_text()))
    # Django's own module selector and test switches are not configuration.
    return keys - {"DJANGO_SETTINGS_MODULE"}


def keys_read_by_deploy_files() -> set[str]:
    """Keys the Gunicorn config and the start scripts read (${KEY:-default} / os.environ.get)."""
    keys = set(_ENV_READ.findall((PROJECT_ROOT / "deploy" / "gunicorn.conf.py").read_text()))
    for script in (PROJECT_ROOT / "deploy" / "compose").glob("*/start"):
        keys.update(_SHELL_READ.findall(script.read_text()))
    return keys


def compose_interpolated_keys() -> set[str]:
    return set(_INTERPOLATION.findall(COMPOSE_FILE.read_text()))


def dockerfile_stages() -> list[dict]:
    """Each stage: its base image, name and instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"base": parts[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((instruction, rest))
    return stages


def dockerfile_args() -> dict[str, str]:
    args = {}
    for match in re.finditer(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.M):
        args[match.group(1)] = match.group(2)
    return args


def nginx_service_environment() -> dict[str, str]:
    """The compose nginx service's environment, each ${KEY:-default} resolved to its default."""
    document, _ = load_compose()
    environment = document["services"]["nginx"]["environment"]
    # `$$` is compose's escape for one `$`.
    return {
        key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)).replace("$$", "$") for key, value in environment.items()
    }
