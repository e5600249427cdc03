"""A real Prometheus (Debian's `prometheus` package) on a free loopback port, and the metric names our
rules and dashboard read.

`PrometheusServer` writes a temporary config (1 s scrape and rule evaluation), keeps its TSDB in a temporary
directory and is stopped (SIGTERM, then SIGKILL) when the `with` block ends; it never touches the packaged
service's :9090 or /var/lib/prometheus. Without the binaries the tests fail in CI (CI=true), where a
missing package is a broken set-up, and are skipped on a developer's machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import yaml

from tests.support.router_server import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "router-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
DASHBOARD = ROOT / "deploy" / "grafana" / "router-dashboard.json"

_METRIC = re.compile(r"\b(router_[a-z0-9_]+)\b")


def binary(name: str) -> str:
    """The path of `promtool` or `prometheus`, or skip (fail under CI) when the package is missing."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} not found; install Debian's prometheus package (bash deploy/local/setup.sh)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of router-rules.yaml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the Grafana dashboard: panel targets, variables and annotations."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


def metric_names(exprs: Iterable[str]) -> set[str]:
    """The router metric (sample) names an expression reads."""
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def concrete(expr: str, job: str = "router", rate_interval: str = "5s") -> str:
    """A dashboard expression with Grafana's variables filled in, as Grafana sends it to Prometheus."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", job).replace("$route", ".+")


class PrometheusServer:
    """`prometheus` scraping `targets` every second (with a bearer token if given) and evaluating `rules`
    (a rule-file text) every second."""

    def __init__(
        self, targets: list[str], rules: str | None = None, job: str = "router", bearer: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="router-prometheus-")
        work = Path(self._dir.name)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        if bearer is not None:  # what the ServiceMonitor's `authorization` block configures
            config["scrape_configs"][0]["authorization"] = {"type": "Bearer", "credentials": bearer}
        if rules is not None:
            (work / "rules.yaml").write_text(rules)
            config["rule_files"] = [str(work / "rules.yaml")]
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.argv = [
            binary("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self._log = work / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with open(self._log, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready in 30 s:\n{self.log()}"
            time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._dir.cleanup()

    def log(self) -> str:
        """What the server wrote so far."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """`GET /api/v1/<path>`'s `data`, asserting the call succeeded."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (each item: `metric` labels and `value` [time, "number"])."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def wait_for(self, expr: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll `expr` until it returns something (the scrape and evaluation run every second)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            assert time.monotonic() < deadline, f"{expr!r} returned nothing within {timeout} s"
            time.sleep(0.25)


def number(result: list[dict[str, Any]]) -> float:
    """The single value of a one-series result."""
    assert len(result) == 1, result
    return float(result[0]["value"][1])
