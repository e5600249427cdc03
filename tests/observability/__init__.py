"""Tests of what operators see: Prometheus metrics, structured logs, state-change events.

`scrape` reads a running router's `/metrics` with prometheus_client's own parser, so the tests check the
exposition a real Prometheus would ingest, not strings that merely look right.
"""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.router_server import RunningRouter

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(router: RunningRouter, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of `/metrics`, keyed by (sample name, labels)."""
    response = httpx.get(router.url + "/metrics", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: Any) -> float | None:
    """One sample's value, or None when the series does not exist."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def label_values(samples: Samples, label: str) -> set[str]:
    """Every value a label takes across all series."""
    return {v for (_, labels) in samples for k, v in labels if k == label}
