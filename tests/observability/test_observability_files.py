"""The observability profile's files (compose, Alloy, Loki, Grafana) parse and agree with the code."""

import json
import re

import pytest
import yaml

from .event_names import PROJECT_ROOT, all_emitted_event_names, emitted_event_names, project_sources

COMPOSE_DIR = PROJECT_ROOT / "deploy" / "compose"
OBSERVABILITY_COMPOSE = COMPOSE_DIR / "observability.yml"
OBSERVABILITY_DIR = PROJECT_ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY_DIR / "grafana" / "dashboards" / "pru_app.json"
ALLOY_CONFIG = OBSERVABILITY_DIR / "alloy" / "config.alloy"
DOCS = PROJECT_ROOT / "docs" / "observability.md"

# The events issue 5 names: the dashboard and the docs must cover each of them.
DOMAIN_EVENTS = {
    "image_fetch.started",
    "image_fetch.page",
    "image_fetch.stored",
    "image_fetch.failed",
    "image_fetch.finished",
    "broadcast.started",
    "broadcast.finished",
}
EVENT_FILTER = re.compile(r'\bevent\s*(=~|!~|!=|=)\s*"([^"]*)"')


@pytest.fixture(scope="module")
def observability():
    return yaml.safe_load(OBSERVABILITY_COMPOSE.read_text())


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard) -> list[str]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels") or [])
    return [target["expr"] for panel in panels for target in panel.get("targets") or []]


def _queried_event_names(expressions) -> set[str]:
    names = set()
    for expression in expressions:
        for operator, value in EVENT_FILTER.findall(expression):
            alternatives = value.split("|") if operator in ("=~", "!~") else [value]
            for name in alternatives:
                assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", name), f"not a plain event name: {name!r} in {expression}"
                names.add(name)
    return names


def test_every_observability_service_is_behind_the_profile_with_a_pinned_image(observability):
    services = observability["services"]
    assert {"grafana", "loki", "alloy", "bugsink", "prometheus"} <= set(services)
    for name, service in services.items():
        assert service.get("profiles") == ["observability"], f"{name} would start without the profile"
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and re.search(r"\d+\.\d+", tag) and "latest" not in tag, f"{name}: {image} is not pinned"


def test_observability_ports_are_published_on_loopback_only(observability):
    for name, service in observability["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_every_file_the_observability_services_mount_exists(observability):
    mounted = 0
    for name, service in observability["services"].items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                continue  # the Docker host's socket: exists only where Docker runs
            source = volume.split(":")[0]
            if source.startswith("."):
                mounted += 1
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} (relative to deploy/compose/)"
    assert mounted >= 4


class _StrictLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, as Docker Compose does (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [key_node.value for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_the_app_compose_file_includes_the_observability_file_once():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    yaml.load(OBSERVABILITY_COMPOSE.read_text(), Loader=_StrictLoader)  # noqa: S506
    included = []
    for entry in document.get("include") or []:
        paths = entry.get("path") if isinstance(entry, dict) else entry
        included += paths if isinstance(paths, list) else [paths]
    assert included.count("deploy/compose/observability.yml") == 1


def test_grafana_provisioning_points_at_loki_and_at_the_mounted_dashboards(observability, dashboard):
    datasources = yaml.safe_load((OBSERVABILITY_DIR / "grafana/provisioning/datasources/loki.yaml").read_text())
    [loki] = datasources["datasources"]
    assert loki["type"] == "loki" and loki["url"] == "http://loki:3100"
    providers = yaml.safe_load((OBSERVABILITY_DIR / "grafana/provisioning/dashboards/pru_app.yaml").read_text())
    [provider] = providers["providers"]
    grafana_mounts = [volume.split(":")[1] for volume in observability["services"]["grafana"]["volumes"]]
    assert provider["options"]["path"] in grafana_mounts
    sources = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])}
    assert sources == {loki["uid"]}


def test_loki_config_parses_and_keeps_a_bounded_history():
    config = yaml.safe_load((OBSERVABILITY_DIR / "loki.yaml").read_text())
    assert config["schema_config"]["configs"][0]["schema"] == "v13"
    assert config["compactor"]["retention_enabled"] is True and config["limits_config"]["retention_period"]


def test_alloy_ships_this_compose_projects_containers_to_the_loki_service(observability, dashboard):
    text = ALLOY_CONFIG.read_text()
    assert text.count("{") == text.count("}")
    project = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["name"]
    # Other projects' containers on the host are dropped by their compose label.
    assert f'selector = "{{compose_project!=\\"{project}\\"}}"' in text
    assert 'action   = "drop"' in text
    assert 'url = "http://loki:3100/loki/api/v1/push"' in text and "loki" in observability["services"]
    # The dashboard selects streams by the label Alloy sets.
    assert 'compose_project = "attrs.\\"com.docker.compose.project\\""' in text
    assert all(f'{{compose_project="{project}"}}' in expression for expression in _queries(dashboard))


def test_dashboard_queries_only_event_names_the_code_emits(dashboard):
    queried = _queried_event_names(_queries(dashboard))
    emitted = all_emitted_event_names()
    assert {"image_fetch.stored", "broadcast.finished", "request_failed"} <= queried  # the scan found queries
    assert queried - emitted == set(), f"the dashboard queries events nothing logs: {sorted(queried - emitted)}"


def test_dashboard_shows_fetch_and_broadcast_counts_failures_durations_and_request_errors(dashboard):
    expressions = _queries(dashboard)
    queried = _queried_event_names(expressions)
    assert {"image_fetch.stored", "image_fetch.failed", "broadcast.finished", "broadcast.failed"} <= queried
    assert any("unwrap ms" in expression and "image_fetch.stored" in expression for expression in expressions)
    assert any("unwrap ms" in expression and "broadcast.finished" in expression for expression in expressions)
    assert any("status >= 500" in expression for expression in expressions)


def test_the_code_emits_every_domain_event_of_the_issue():
    emitted = emitted_event_names(project_sources())
    assert DOMAIN_EVENTS - emitted == set()


def _documented_event_names() -> set[str]:
    """First-column names of the event tables in the docs' "Logs" section."""
    text = DOCS.read_text()
    logs_section = text[text.index("## Logs") : text.index("## Sentry")]
    return set(re.findall(r"^\|\s*`([a-z_]+(?:\.[a-z_]+)?)`", logs_section, re.M))


def test_every_domain_event_the_code_emits_is_documented():
    documented = _documented_event_names()
    emitted = {name for name in emitted_event_names(project_sources()) if re.fullmatch(r"[a-z_]+\.[a-z_]+", name)}
    assert documented >= DOMAIN_EVENTS
    assert emitted - documented == set(), f"docs/observability.md lacks {sorted(emitted - documented)}"


def test_the_docs_name_only_events_that_exist():
    documented = _documented_event_names()
    assert {"request_finished", "image_fetch.stored"} <= documented
    assert documented - all_emitted_event_names() == set()


def test_documented_observability_settings_are_in_env_example():
    env_example = (PROJECT_ROOT / ".env.example").read_text()
    compose_keys = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", OBSERVABILITY_COMPOSE.read_text()))
    missing = {key for key in compose_keys if not re.search(rf"^#?\s*{key}=", env_example, re.M)}
    assert missing == set(), f".env.example lacks {sorted(missing)}"


def test_sentry_settings_are_in_env_example():
    env_example = (PROJECT_ROOT / ".env.example").read_text()
    for key in (
        "SENTRY_DSN",
        "SENTRY_ENVIRONMENT",
        "SENTRY_RELEASE",
        "SENTRY_TRACES_SAMPLE_RATE",
        "SENTRY_JOB_TRACES_SAMPLE_RATE",
        "SENTRY_CRON_MONITOR_SLUG",
        "SENTRY_CRON_SCHEDULE",
    ):
        assert re.search(rf"^{key}=", env_example, re.M), key


def test_every_event_name_on_this_list_is_a_string_the_scan_can_see():
    # The scanner reads source text: a name built at runtime would be invisible to the checks above.
    sources = "\n".join(path.read_text() for path in project_sources())
    assert not re.search(r'\.(info|warning|error|exception)\(\s*f"', sources), "an f-string event name"
