"""The alert rules and the Prometheus and Grafana files: promtool checks and unit-tests them; they agree with the code."""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from .event_names import PROJECT_ROOT

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "observability" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
GRAFANA_DIR = PROJECT_ROOT / "deploy" / "observability" / "grafana"
METRICS_DASHBOARD = GRAFANA_DIR / "dashboards" / "pru_app_metrics.json"
LOGS_DASHBOARD = GRAFANA_DIR / "dashboards" / "pru_app.json"
DOCS = PROJECT_ROOT / "docs" / "observability.md"
# The labels Alloy puts on every stream (deploy/observability/alloy/config.alloy).
ALLOY_LABELS = {"compose_project", "service", "container", "level", "oneoff"}

promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="Debian's prometheus package (bin/setup-dev)")


def _promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *arguments], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


@promtool
def test_promtool_accepts_the_alert_rules():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@promtool
def test_the_alert_rules_pass_their_unit_tests():
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_the_rule_unit_tests_fail_when_a_threshold_moves(tmp_path):
    # A unit test that cannot fail proves nothing: with the stall threshold at 100 minutes instead of
    # 10, BroadcastStalled's test must go red.
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace("> 600", "> 6000"))
    shutil.copyfile(RULE_TESTS, tmp_path / "alerts.test.yml")
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "BroadcastStalled" in result.stdout + result.stderr


@promtool
def test_promtool_accepts_the_compose_prometheus_config(tmp_path):
    # The compose file mounts alerts.yml at /etc/prometheus/; check it where it lies here.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {job["job_name"] for job in config["scrape_configs"]} == {"web", "worker"}


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_runbook_whose_section_the_docs_have():
    docs = DOCS.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    names = {rule["alert"] for rule in _alerts()}
    assert {
        "BroadcastStalled",
        "BroadcastChunksFailing",
        "SweeperNotRunning",
        "ImagesMissingOrCorrupt",
        "ImageVerifyNotSucceeded",
        "HighServerErrorRate",
    } <= names
    for rule in _alerts():
        runbook = rule["annotations"]["runbook"]
        anchor = re.match(r"docs/observability\.md#([a-z0-9-]+)", runbook)
        assert anchor, f"{rule['alert']}: runbook {runbook!r} names no section"
        assert anchor[1] in headings, f"{rule['alert']}: docs/observability.md has no section #{anchor[1]}"
        assert rule["labels"]["severity"] in ("page", "warning")


def test_the_metrics_dashboard_queries_the_provisioned_prometheus():
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yaml").read_text())
    [prometheus] = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
    dashboard = json.loads(METRICS_DASHBOARD.read_text())
    targets = [target for panel in dashboard["panels"] for target in panel.get("targets") or []]
    assert targets and {target["datasource"]["uid"] for target in targets} == {prometheus["uid"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert any("stuck" in title for title in titles) and any("intact" in title for title in titles)
    assert any("request failed" in title for title in titles)


STREAM_SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r'^\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"[^"]*"\s*$')


def _logql(dashboard_path) -> list[str]:
    dashboard = json.loads(dashboard_path.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels") or [])
    return [target["expr"] for panel in panels for target in panel.get("targets") or []]


def test_every_logql_query_selects_streams_by_alloys_labels_and_parses_json_before_filtering_fields():
    for expression in _logql(LOGS_DASHBOARD):
        selectors = STREAM_SELECTOR.findall(expression.split("|")[0] + "}") if "{" in expression else []
        assert selectors, f"no stream selector: {expression}"
        for matcher in selectors[0].split(","):
            parsed = MATCHER.match(matcher)
            assert parsed, f"not a label matcher: {matcher!r} in {expression}"
            assert parsed[1] in ALLOY_LABELS, f"{parsed[1]} is no label Alloy sets: {expression}"
        pipeline = expression[expression.index("}") + 1 :]
        field_filter = re.search(r"\|\s*(event|status|unwrap)\b", pipeline)
        if field_filter:
            assert "| json" in pipeline[: field_filter.start() + 1], f"a field is used before `| json`: {expression}"
        assert expression.count("(") == expression.count(")") and expression.count("[") == expression.count("]")
