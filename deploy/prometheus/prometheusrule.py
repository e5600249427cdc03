"""Write the Prometheus operator's PrometheusRule from router-rules.yaml, so the two cannot drift.

    python deploy/prometheus/prometheusrule.py          # rewrite the PrometheusRule
    python deploy/prometheus/prometheusrule.py --check  # exit 1 if it is out of date

The rule groups are copied as they are (the PrometheusRule's `spec` is a rule file); the test suite
(tests/deploy/test_prometheus_rules.py) runs the same check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "router-rules.yaml"
TARGET = HERE.parent / "kubernetes" / "components" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/router-rules.yaml by deploy/prometheus/prometheusrule.py: edit the\n"
    "# rules there and run the script; a test fails when this file is out of date.\n"
)


def render() -> str:
    """The PrometheusRule manifest carrying the rule groups of router-rules.yaml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "router",
            "labels": {"app.kubernetes.io/name": "router", "app.kubernetes.io/component": "gateway"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    """Rewrite the target, or with --check say whether it is current."""
    text = render()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python {Path(__file__)}")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
