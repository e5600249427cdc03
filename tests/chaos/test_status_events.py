"""What operators see: `/status` and `/debug` (a snapshot) and `/events` (every change, live, over SSE)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.chaos import (
    FAST_HEALTH,
    SLACK,
    EventListener,
    model_of,
    one_route,
    post,
    status,
    upstream,
    wait_health,
)
from tests.fakes import FakeUpstream, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]


def test_status_document(fake: FakeUpstream, start_router: Start) -> None:
    text = table(
        upstreams={"u": upstream(fake, max_concurrency=4, max_queue=2)},
        routes=[
            {"path": "/chat/m", "model": model_of(fake), "upstream": "u", "fallbacks": ["/chat/x"]},
            {"path": "/chat/x", "model": "absent-model", "upstream": "u"},
        ],
        defaults={"health_check": FAST_HEALTH},
    )
    router = start_router(text)
    wait_health(router, "healthy")
    wait_health(router, "unhealthy", "/chat/x")
    doc = status(router)

    config = doc["config"]
    assert config["version"] == 1
    assert config["source"] == "test-routes.yaml"
    assert len(config["sha256"]) == 64 and config["sha256"] == router.config.sha256
    assert abs(config["loaded_at"] - time.time()) < 30

    good, bad = doc["routes"]
    assert {k: good[k] for k in ("path", "name", "model", "state", "fallbacks")} == {
        "path": "/chat/m",
        "name": "m",
        "model": model_of(fake),
        "state": "healthy",
        "fallbacks": ["/chat/x"],
    }
    (rep,) = good["replicas"]
    assert {k: rep[k] for k in ("upstream", "type", "base_url", "weight", "available")} == {
        "upstream": "u",
        "type": fake.kind,
        "base_url": fake.base_url,
        "weight": 1,
        "available": True,
    }
    assert (rep["in_flight"], rep["upstream_in_flight"], rep["queued"]) == (0, 0, 0)
    health: dict[str, Any] = rep["health"]
    assert health["state"] == "healthy"
    assert health["consecutive_successes"] >= 1 and health["consecutive_failures"] == 0
    assert abs(health["last_probe_at"] - time.time()) < 5
    assert health["last_latency_ms"] is not None and health["last_latency_ms"] >= 0
    assert health["last_error"] is None
    assert rep["breaker"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "retry_after": 0.0,
        "trials_in_flight": 0,
    }

    assert bad["state"] == "unavailable"
    bad_health = bad["replicas"][0]["health"]
    assert bad_health["state"] == "unhealthy"
    assert bad_health["consecutive_failures"] >= 2
    assert "absent-model" in bad_health["last_error"]

    debug = status(router, "/debug")
    assert set(doc) <= set(debug), "/debug is /status and more"
    assert len(debug["probe_loops"]) == 2
    assert debug["event_subscribers"] == 0


def test_status_shows_open_breaker_and_time_left(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(
        one_route(fake, defaults={"max_retries": 0}, breaker={"failure_threshold": 1, "open_seconds": 5})
    )
    fake.set_behaviour("status", code=500)
    post(router, "/chat/m")
    (route,) = status(router)["routes"]
    assert route["state"] == "unavailable"
    breaker = route["replicas"][0]["breaker"]
    assert breaker["state"] == "open" and breaker["consecutive_failures"] == 1
    assert 4 < breaker["retry_after"] <= 5
    assert route["replicas"][0]["available"] is False


def test_events_stream_snapshot_then_breaker_and_health_transitions(
    fake: FakeUpstream, start_router: Start
) -> None:
    router = start_router(
        one_route(
            fake,
            defaults={"max_retries": 0, "health_check": FAST_HEALTH},
            breaker={"failure_threshold": 1, "open_seconds": 0.3},
        )
    )
    wait_health(router, "healthy")
    with EventListener(router) as events:
        first = events.wait(lambda got: got[0] if got else None)
        assert first[0] == "snapshot"
        assert first[1]["routes"][0]["path"] == "/chat/m"
        assert first[1]["routes"][0]["replicas"][0]["health"]["state"] == "healthy"
        assert status(router, "/debug")["event_subscribers"] == 1

        def breaker_moves() -> list[tuple[str, str]]:
            return [(e["old"], e["new"]) for e in events.of("breaker")]

        fake.set_behaviour("status", code=500)
        assert post(router, "/chat/m").status_code == 502
        events.wait(lambda _: breaker_moves() == [("closed", "open")])
        opened = events.of("breaker")[0]
        assert opened["upstream"] == "u" and "1 consecutive failures" in opened["reason"]
        assert 0 < opened["retry_after"] <= 0.3
        # nobody asks: the router itself notices the open period ending and says so
        events.wait(lambda _: len(breaker_moves()) == 2, timeout=0.3 + SLACK)
        assert breaker_moves()[1] == ("open", "half_open")
        fake.reset()
        assert post(router, "/chat/m").status_code == 200
        events.wait(lambda _: breaker_moves()[-1] == ("half_open", "closed"))

        def health_moves() -> list[tuple[str, str]]:
            return [(e["old"], e["new"]) for e in events.of("health")]

        fake.go_down()
        events.wait(lambda _: health_moves() == [("healthy", "unhealthy")])
        fake.come_up()
        events.wait(lambda _: health_moves() == [("healthy", "unhealthy"), ("unhealthy", "healthy")])
        down, up = events.of("health")
        for event in (down, up):
            assert event["routes"] == ["/chat/m"]
            assert (event["upstream"], event["model"]) == ("u", model_of(fake))
            assert isinstance(event["time"], float)
        assert "consecutive probes failed" in down["reason"]
        assert "consecutive probes succeeded" in up["reason"]
        assert [name for name, _ in events.events].count("snapshot") == 1
    wait_for(lambda: status(router, "/debug")["event_subscribers"] == 0)
