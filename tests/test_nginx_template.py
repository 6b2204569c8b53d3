"""The nginx template: rendered like the official image renders it, and accepted by `nginx -t`."""

import shutil
import subprocess

import pytest

from deploy.nginx_config import ENVSUBST_FILTER, TEMPLATE_PATH, TemplateVariableMissing, render_template, write_config
from tests.deploy_files import load_compose

nginx = shutil.which("nginx") or "/usr/sbin/nginx"
envsubst = shutil.which("envsubst")

# The official image's /docker-entrypoint.d/20-envsubst-on-templates.sh, reduced to its substitution.
OFFICIAL_ENVSUBST = r"""
filter="${NGINX_ENVSUBST_FILTER:-}"
defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" < /dev/null ))
envsubst "$defined_envs" < "$1"
"""


@pytest.fixture(scope="module")
def compose_nginx_environment():
    document, _ = load_compose()
    return {key: str(value) for key, value in document["services"]["nginx"]["environment"].items()}


def _compose_values(environment: dict) -> dict:
    """Compose's ${KEY:-default} resolved to its default, as with an .env that leaves them alone."""
    import re

    # `$$` is compose's escape for one `$`.
    return {key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value).replace("$$", "$") for key, value in environment.items()}


def test_rendering_keeps_nginx_variables_and_substitutes_only_ours(compose_nginx_environment):
    environment = _compose_values(compose_nginx_environment) | {"request_id": "evil", "host": "evil", "HOME": "/x"}
    rendered = render_template(environment)
    assert "${" not in rendered
    for nginx_variable in ("$request_id", "$http_host", "$binary_remote_addr", "$remote_addr", "$uri"):
        assert nginx_variable in rendered
    assert "evil" not in rendered
    assert "set $pru_storage_upstream minio:9000;" in rendered
    assert "proxy_set_header Host minio:9000;" in rendered
    assert "set $pru_app_upstream web:8000;" in rendered
    assert "resolver 127.0.0.11 valid=5s" in rendered


@pytest.mark.skipif(envsubst is None, reason="gettext-base's envsubst is not installed")
def test_python_renderer_matches_the_official_image_envsubst(compose_nginx_environment, tmp_path):
    environment = _compose_values(compose_nginx_environment)
    noisy = environment | {"HOSTNAME": "container", "host": "evil", "uri": "evil", "PATH": "/usr/bin:/bin"}
    official = subprocess.run(
        ["bash", "-c", OFFICIAL_ENVSUBST, "envsubst", str(TEMPLATE_PATH)],
        env=noisy,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert environment["NGINX_ENVSUBST_FILTER"] == ENVSUBST_FILTER
    assert official == render_template(noisy)


def test_rendering_refuses_a_missing_variable(compose_nginx_environment):
    environment = _compose_values(compose_nginx_environment)
    del environment["STORAGE_UPSTREAM"]
    with pytest.raises(TemplateVariableMissing, match="STORAGE_UPSTREAM"):
        render_template(environment)


@pytest.mark.parametrize("setup", ["compose", "local"])
def test_nginx_accepts_the_rendered_template(compose_nginx_environment, tmp_path, setup):
    environment = _compose_values(compose_nginx_environment)
    if setup == "compose":
        # Service names do not resolve here; loopback stands in for them, nothing else changes.
        environment |= {
            "NGINX_APP_UPSTREAM": "127.0.0.1:8000",
            "STORAGE_UPSTREAM": "127.0.0.1:9000",
            "NGINX_LISTEN": "127.0.0.1:8080",
        }
    else:
        environment |= {
            "NGINX_APP_UPSTREAM": "127.0.0.1:18000",
            "STORAGE_UPSTREAM": "127.0.0.1:19000",
            "NGINX_LISTEN": "127.0.0.1:18080",
        }
    environment["NGINX_STATIC_ROOT"] = str(tmp_path / "static")
    config = write_config(run_dir=tmp_path / "nginx", environ=environment, as_root=True)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path / "nginx"), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_rejects_a_broken_render(compose_nginx_environment, tmp_path):
    """The check above can fail: a bad value makes nginx -t say so."""
    environment = _compose_values(compose_nginx_environment) | {
        "NGINX_APP_UPSTREAM": "127.0.0.1:8000",
        "STORAGE_UPSTREAM": "127.0.0.1:9000",
        "NGINX_LISTEN": "127.0.0.1:8080",
        "NGINX_STATIC_ROOT": str(tmp_path),
        "NGINX_LOGIN_RATE": "ten-per-minute",
    }
    config = write_config(run_dir=tmp_path / "nginx", environ=environment, as_root=True)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path / "nginx"), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "rate" in result.stderr


def test_no_proxy_is_trusted_by_default(compose_nginx_environment, tmp_path):
    environment = _compose_values(compose_nginx_environment)
    assert environment["NGINX_TRUSTED_PROXIES"] == ""
    environment |= {"NGINX_STATIC_ROOT": str(tmp_path)}
    write_config(run_dir=tmp_path / "nginx", environ=environment, as_root=True)
    generated = (tmp_path / "nginx" / "conf.d" / "pru-trusted-proxies.conf").read_text()
    assert "set_real_ip_from" not in generated and "real_ip_header" not in generated


def test_a_trusted_proxy_list_becomes_real_ip_settings_nginx_accepts(compose_nginx_environment, tmp_path):
    environment = _compose_values(compose_nginx_environment) | {
        "NGINX_APP_UPSTREAM": "127.0.0.1:8000",
        "STORAGE_UPSTREAM": "127.0.0.1:9000",
        "NGINX_LISTEN": "127.0.0.1:8080",
        "NGINX_STATIC_ROOT": str(tmp_path),
        "NGINX_TRUSTED_PROXIES": "10.0.0.5, 172.16.0.0/12 2001:db8::/32",
    }
    config = write_config(run_dir=tmp_path / "nginx", environ=environment, as_root=True)
    generated = (tmp_path / "nginx" / "conf.d" / "pru-trusted-proxies.conf").read_text()
    assert [line for line in generated.splitlines() if line.startswith("set_real_ip_from")] == [
        "set_real_ip_from 10.0.0.5;",
        "set_real_ip_from 172.16.0.0/12;",
        "set_real_ip_from 2001:db8::/32;",
    ]
    assert "real_ip_header X-Forwarded-For;" in generated and "real_ip_recursive on;" in generated
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path / "nginx"), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("entry", ["10.0.0.1;include /etc/passwd", "proxy.example.com", "$remote_addr"])
def test_an_entry_that_is_not_an_address_is_refused_by_name(compose_nginx_environment, tmp_path, entry):
    environment = _compose_values(compose_nginx_environment) | {
        "NGINX_STATIC_ROOT": str(tmp_path),
        "NGINX_TRUSTED_PROXIES": entry,
    }
    with pytest.raises(ValueError, match="NGINX_TRUSTED_PROXIES entry"):
        write_config(run_dir=tmp_path / "nginx", environ=environment, as_root=True)


def test_the_nginx_image_runs_the_same_trusted_proxies_script_after_the_templates():
    from tests.deploy_files import DOCKERFILE

    text = DOCKERFILE.read_text()
    assert "COPY --chmod=755 deploy/nginx/trusted-proxies.sh /docker-entrypoint.d/25-" in text
