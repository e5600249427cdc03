"""The alerting rules and the Grafana dashboard in deploy/, checked with Debian's promtool.

`promtool check rules` parses every expression; `promtool test rules` runs the unit tests in
deploy/prometheus/tests/, and every alert must have a case where it fires and one where it stays quiet.
Whether the metrics they read exist, and how they behave against a live router, is
tests/observability/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.prometheus import DASHBOARD, ROOT, RULE_TESTS, RULES, alert_rules, binary

RUNBOOKS = ROOT / "docs" / "alerts.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check is real: a typo in an expression fails it."""
    broken = tmp_path / "rules.yaml"
    broken.write_text(RULES.read_text().replace("router_route_available == 0", "router_route_available == ("))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_every_alert_has_unit_tests_that_pass() -> None:
    files = sorted(RULE_TESTS.glob("*.yaml"))
    done = promtool("test", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr
    fires: set[str] = set()
    quiet: set[str] = set()
    for file in files:
        document = yaml.safe_load(file.read_text())
        assert document["rule_files"] == ["../router-rules.yaml"], f"{file.name} must test the shipped rules"
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they stay quiet"


def test_promtool_test_fails_when_an_alert_changes(tmp_path: Path) -> None:
    """The unit tests can fail: with a threshold moved, the error-ratio test no longer passes."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "router-rules.yaml").write_text(RULES.read_text().replace(") > 0.05", ") > 0.5"))
    case = tmp_path / "tests" / "error_ratio.yaml"
    case.write_text((RULE_TESTS / "error_ratio.yaml").read_text())
    assert promtool("test", "rules", str(case)).returncode != 0


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook"] == f"docs/alerts.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/alerts.md has no section for {name}"


def test_the_issue_alerts_are_all_there() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "router_route_available == 0" in exprs["RouterRouteUnavailable"]
    assert 'router_circuit_breaker_state{state="open"}' in exprs["RouterCircuitBreakerOpen"]
    assert "router_config_last_reload_successful == 0" in exprs["RouterConfigReloadFailed"]
    assert 'status=~"5.."' in exprs["RouterHighErrorRatio"]
    assert "router_upstream_queued_requests" in exprs["RouterUpstreamQueueSaturated"]
    assert exprs["RouterSharedStateLost"] == "router_state_backend_up == 0"
    assert exprs["RouterQuotaNearlyExhausted"] == "router_quota_used / router_quota_limit > 0.9"


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    done = subprocess.run(
        [sys.executable, "deploy/prometheus/prometheusrule.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_is_a_grafana_dashboard_over_the_router_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    source = {v["name"]: v for v in board["templating"]["list"]}["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("requests/s", "error ratio", "p50 / p99", "first token", "tokens/s", "in flight", "queued"):
        assert topic in titles, topic
    for topic in ("breaker", "health", "reload"):
        assert topic in titles, topic
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert re.search(r"\brouter_", target["expr"]), panel["title"]
            assert 'job=~"$job"' in target["expr"], f"{panel['title']}: every query follows the job variable"
