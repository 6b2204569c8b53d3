"""Render deploy/nginx/default.conf.template the way the official nginx image does, for Debian's nginx."""

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
TEMPLATE_PATH = DEPLOY_DIR / "nginx" / "default.conf.template"
# Writes the real-IP settings from NGINX_TRUSTED_PROXIES (the image runs it from /docker-entrypoint.d/).
TRUSTED_PROXIES_SCRIPT = DEPLOY_DIR / "nginx" / "trusted-proxies.sh"

# The compose service sets NGINX_ENVSUBST_FILTER to this same expression, so the official image's
# envsubst and this renderer substitute exactly the same names; nginx's $variables are left alone.
ENVSUBST_FILTER = r"^(NGINX_|STORAGE_UPSTREAM$)"

# envsubst reads `$NAME` and `${NAME}`; a name it was not told about stays as written.
_REFERENCE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")

# What the official image's /etc/nginx/nginx.conf sets around conf.d/*.conf, with every path moved
# under a run directory so an unprivileged user can run it (and `daemon off` for a supervised child).
MAIN_CONFIG = """\
{user_line}worker_processes {worker_processes};
daemon off;
pid {run_dir}/nginx.pid;
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    include {mime_types};
    default_type application/octet-stream;
    client_body_temp_path {run_dir}/client_body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;

    sendfile on;
    keepalive_timeout 65;

    include {run_dir}/conf.d/*.conf;
}}
"""


class TemplateVariableMissing(KeyError):
    """The template names a variable the environment does not define."""


def template_variables(template: str | None = None) -> set[str]:
    """The substitutable names the template uses."""
    text = TEMPLATE_PATH.read_text() if template is None else template
    filter_pattern = re.compile(ENVSUBST_FILTER)
    names = {match.group("braced") or match.group("bare") for match in _REFERENCE.finditer(text)}
    return {name for name in names if filter_pattern.search(name)}


def host_resolver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """NGINX_RESOLVER without Docker: the host's nameservers (nginx's syntax), 127.0.0.1 when none is listed."""
    servers = []
    try:
        for line in resolv_conf.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                address = fields[1].split("%")[0]
                servers.append(f"[{address}]" if ":" in address else address)
    except OSError:
        pass
    return " ".join(servers) or "127.0.0.1"


def render_template(environ: Mapping[str, str], template: str | None = None) -> str:
    """Substitute the filtered names like envsubst; fail on one the environment lacks."""
    text = TEMPLATE_PATH.read_text() if template is None else template
    if "NGINX_RESOLVER" not in environ:
        # Names in proxy_pass are resolved at run time (see the template); compose sets Docker's DNS.
        environ = {**environ, "NGINX_RESOLVER": host_resolver()}
    filter_pattern = re.compile(ENVSUBST_FILTER)
    missing = sorted(name for name in template_variables(text) if name not in environ)
    if missing:
        # The image would leave "${NAME}" in place and nginx would refuse it less clearly.
        raise TemplateVariableMissing(f"nginx template needs {', '.join(missing)}")

    def substitute(match: re.Match) -> str:
        name = match.group("braced") or match.group("bare")
        if filter_pattern.search(name):
            return environ[name]
        return match.group(0)

    return _REFERENCE.sub(substitute, text)


def write_config(
    *, run_dir: Path, environ: Mapping[str, str], worker_processes: str = "auto", as_root: bool = False
) -> Path:
    """Write nginx.conf and conf.d/default.conf under run_dir; return the main config's path."""
    run_dir = Path(run_dir).resolve()
    for name in ("conf.d", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / name).mkdir(parents=True, exist_ok=True)
    (run_dir / "conf.d" / "default.conf").write_text(render_template(environ))
    write_trusted_proxies(run_dir / "conf.d" / "pru-trusted-proxies.conf", environ.get("NGINX_TRUSTED_PROXIES", ""))
    main_config = run_dir / "nginx.conf"
    main_config.write_text(
        MAIN_CONFIG.format(
            # A root master would hand its workers to "nobody", who cannot read the run directory.
            user_line="user root;\n" if as_root else "",
            worker_processes=worker_processes,
            run_dir=run_dir,
            mime_types=_mime_types_path(),
        )
    )
    return main_config


def write_trusted_proxies(path: Path, trusted_proxies: str) -> None:
    """Run the image's own script, so both ways of running nginx trust exactly the same peers."""
    result = subprocess.run(
        ["sh", str(TRUSTED_PROXIES_SCRIPT)],
        env={
            "PATH": "/usr/bin:/bin",
            "NGINX_TRUSTED_PROXIES": trusted_proxies,
            "NGINX_TRUSTED_PROXIES_CONF": str(path),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise ValueError(result.stderr.strip())


def _mime_types_path() -> str:
    for candidate in ("/etc/nginx/mime.types", "/usr/local/etc/nginx/mime.types", "/opt/homebrew/etc/nginx/mime.types"):
        if Path(candidate).is_file():
            return candidate
    raise FileNotFoundError("nginx's mime.types not found: install nginx (bin/setup-dev does)")
