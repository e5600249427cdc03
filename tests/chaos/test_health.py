"""Active health checks: what is probed, the state machine, shared probe loops, and recovery without restart.

A route's health is its model on its upstream: Ollama's /api/tags must list the model, an OpenAI server's
/models must; `health_check.endpoint` probes liveness only. States go initial -> healthy | unhealthy by
the thresholds; an unhealthy route answers 503 at once, and recovers by itself once probes pass again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos import (
    FAST_HEALTH,
    SLACK,
    breaker_state,
    error_of,
    health_state,
    model_of,
    one_route,
    post,
    replica,
    status,
    timer,
    upstream,
    wait_health,
)
from tests.fakes import FakeUpstream, wait_for
from tests.support.router_server import RunningRouter, table

Start = Callable[..., RunningRouter]


LISTING = {"ollama": "/api/tags", "openai": "/v1/models"}
LIVENESS = {"ollama": "/api/version", "openai": "/health"}


def health(**overrides: Any) -> dict[str, Any]:
    """Test-speed health-check defaults with some keys changed."""
    return {"health_check": {**FAST_HEALTH, **overrides}}


def test_listing_without_the_model_makes_the_route_unhealthy_and_503(
    fake: FakeUpstream, start_router: Start
) -> None:
    """A running server that does not list the route's model is unhealthy for that route."""
    router = start_router(one_route(fake, model="absent-model:1b", defaults=health()))
    wait_health(router, "unhealthy")
    with timer() as elapsed:
        response = post(router, "/chat/m")
    assert response.status_code == 503
    assert elapsed() < SLACK
    error = error_of(response)
    assert error["code"] == "upstream_unavailable"
    assert "absent-model:1b" in error["message"], "the 503 says why: the probe's error names the model"
    assert int(response.headers["retry-after"]) >= 1
    assert fake.chat_count == 0, "an unhealthy route does not bother the upstream"
    assert fake.probe_count[LISTING[fake.kind]] >= 2


def test_listing_with_the_model_is_healthy(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, defaults=health()))
    wait_health(router, "healthy")
    assert post(router, "/chat/m").status_code == 200


def test_endpoint_probe_is_liveness_only(fake: FakeUpstream, start_router: Start) -> None:
    """With `endpoint`, a server that answers is healthy even if it lacks the model (chat then says 404)."""
    endpoint = LIVENESS[fake.kind]
    router = start_router(one_route(fake, model="absent-model:1b", defaults=health(endpoint=endpoint)))
    wait_health(router, "healthy")
    assert fake.probe_count[endpoint] >= 1
    assert fake.probe_count[LISTING[fake.kind]] == 0
    response = post(router, "/chat/m")
    assert response.status_code == 404
    assert "absent-model:1b" in error_of(response)["message"]


def test_probe_timeout_counts_as_failure(fake: FakeUpstream, start_router: Start) -> None:
    fake.probe_delay = 2.0
    router = start_router(one_route(fake, defaults=health(timeout=0.1, failure_threshold=1)))
    wait_health(router, "unhealthy")
    assert "timed out" in (replica(router)["health"]["last_error"] or "")


def test_initial_state_lets_traffic_through(fake: FakeUpstream, start_router: Start) -> None:
    """Until the first probe answers, the route serves: a fresh router must not refuse everything."""
    fake.probe_delay = 0.3  # the first probe is still out while we ask
    router = start_router(one_route(fake, defaults=health(timeout=2.0)))
    assert health_state(router) == "initial"
    assert post(router, "/chat/m").status_code == 200
    wait_health(router, "healthy")


def test_thresholds_and_each_transition_logged_once(
    fake: FakeUpstream, start_router: Start, capfd: pytest.CaptureFixture[str]
) -> None:
    """One log line per transition, written by the event log (not also by the standard library's)."""
    router = start_router(one_route(fake, defaults=health(failure_threshold=3, recovery_threshold=2)))
    wait_health(router, "healthy")
    fake.go_down()
    wait_health(router, "unhealthy")
    assert replica(router)["health"]["consecutive_failures"] >= 3
    fake.come_up()
    wait_health(router, "healthy")
    seen: list[str] = []

    def three_logged() -> bool:
        seen.append(capfd.readouterr().err)
        return "".join(seen).count("health of") >= 3

    wait_for(three_logged)
    output = "".join(seen)
    lines = [json.loads(line) for line in output.splitlines() if "health of" in line]
    assert output.count("health of") == 3, output  # once each, never also as a plain stdlib line
    logged = [line["message"] for line in lines]
    for line in logged:
        assert "/chat/m" in line and model_of(fake) in line and "upstream u" in line, line
    assert "initial -> healthy (first probe succeeded)" in logged[0]
    assert "healthy -> unhealthy (3 consecutive probes failed" in logged[1]
    assert "refused" in logged[1], "the reason carries the probe's error"
    assert "unhealthy -> healthy (2 consecutive probes succeeded)" in logged[2]
    assert [line["level"] for line in lines] == ["info", "warning", "info"]


def test_recovery_interval_applies_while_unhealthy(fake: FakeUpstream, start_router: Start) -> None:
    """Healthy routes are probed every 5 s here; an unhealthy one every 0.05 s, so it comes back fast."""
    fake.go_down()
    policy = health(interval=5.0, failure_threshold=1, recovery_threshold=2, recovery_interval=0.05)
    router = start_router(one_route(fake, defaults=policy))
    wait_health(router, "unhealthy")
    fake.come_up()
    with timer() as elapsed:
        wait_health(router, "healthy")
    assert elapsed() < 2 * 0.05 * 1.1 + SLACK


def test_first_probe_at_start_up_and_one_loop_per_shared_question(
    fake: FakeUpstream, start_router: Start
) -> None:
    """Two routes on the same model and upstream share one probe loop; another model gets its own loop,
    and both loops share the upstream's one model listing."""
    fake.models = [model_of(fake), "second-model"]
    policy = {**FAST_HEALTH, "interval": 30.0}  # only the start-up probes happen during the test
    text = table(
        upstreams={"u": upstream(fake)},
        routes=[
            {"path": "/chat/a", "model": model_of(fake), "upstream": "u"},
            {"path": "/chat/b", "model": model_of(fake), "upstream": "u", "max_tokens": 16},
            {"path": "/chat/c", "model": "second-model", "upstream": "u"},
        ],
        defaults={"health_check": policy},
    )
    router = start_router(text)
    for path in ("/chat/a", "/chat/b", "/chat/c"):
        wait_health(router, "healthy", path)
    # two questions (two models), but one model listing answers both: one start-up fetch in all
    assert fake.probe_count[LISTING[fake.kind]] == 1, "one listing fetch per upstream, not per route or model"
    loops = status(router, "/debug")["probe_loops"]
    assert {loop["model"]: loop["routes"] for loop in loops} == {
        model_of(fake): ["/chat/a", "/chat/b"],
        "second-model": ["/chat/c"],
    }
    assert router.runtime.prober.running == 2
    a, b = replica(router, "/chat/a")["health"], replica(router, "/chat/b")["health"]
    assert a["last_probe_at"] == b["last_probe_at"], "the two routes read one tracker"


def test_shared_loop_probes_at_one_loops_rate(fake: FakeUpstream, start_router: Start) -> None:
    """Two routes on one question, probed every 0.05 s: ~10 probes take ~0.5 s (two loops: ~0.25 s)."""
    policy = {**FAST_HEALTH, "interval": 0.05, "jitter": 0.0}
    text = table(
        upstreams={"u": upstream(fake)},
        routes=[
            {"path": "/chat/a", "model": model_of(fake), "upstream": "u"},
            {"path": "/chat/b", "model": model_of(fake), "upstream": "u", "max_tokens": 16},
        ],
        defaults={"health_check": policy},
    )
    path = LISTING[fake.kind]
    router = start_router(text)
    wait_for(lambda: fake.probe_count[path] >= 1)
    with timer() as elapsed:
        wait_for(lambda: fake.probe_count[path] >= 11)
    assert elapsed() >= 10 * 0.05 * 0.8, "probes came faster than one loop sends them"
    assert router.runtime.prober.running == 1


def test_jitter_spreads_probe_delays(fake: FakeUpstream, start_router: Start) -> None:
    router = start_router(one_route(fake, defaults=health(interval=1.0, jitter=0.5)))

    def delays() -> list[float]:
        ((_, tracker),) = router.runtime.registry.health_checks()
        return [tracker.next_delay() for _ in range(200)]

    samples = router.sync(delays)
    assert all(0.5 <= d <= 1.5 for d in samples)
    assert max(samples) - min(samples) > 0.5, "delays are spread over the jitter range"


def test_route_recovers_without_restart_and_recovery_time(
    fake: FakeUpstream, start_router: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    """Upstream dies, requests open the breaker and the route turns unhealthy; after come_up() the next
    request succeeds within recovery_threshold x recovery_interval (+ jitter and slack), although the
    breaker's own open period (30 s) is far from over: a passing health check ends it (Envoy un-ejects
    a host on a successful active check too)."""
    recovery_threshold, recovery_interval, jitter = 3, 0.05, 0.1
    policy = health(
        interval=0.1,
        failure_threshold=2,
        recovery_threshold=recovery_threshold,
        recovery_interval=recovery_interval,
        jitter=jitter,
    )
    router = start_router(
        one_route(fake, defaults=policy, breaker={"failure_threshold": 2, "open_seconds": 30})
    )
    wait_health(router, "healthy")
    fake.go_down()
    assert post(router, "/chat/m").status_code == 503  # 3 refused attempts: the breaker opens
    assert breaker_state(router) == "open"
    wait_health(router, "unhealthy")

    fake.clear_records()
    fake.come_up()
    came_up = time.monotonic()
    failures = 0
    while True:
        response = post(router, "/chat/m")
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        failures += 1
        assert time.monotonic() - came_up < 5, "the route did not recover"
        time.sleep(0.01)
    recovered = time.monotonic() - came_up
    bound = recovery_threshold * recovery_interval * (1 + jitter) + SLACK
    with capsys.disabled():
        print(
            f"\n[chaos] {fake.kind}: first successful request {recovered * 1000:.0f} ms after come_up() "
            f"(recovery_threshold={recovery_threshold} x recovery_interval={recovery_interval}s; "
            f"{failures} fast 503s meanwhile; bound {bound:.2f}s)"
        )
    assert recovered <= bound
    assert fake.chat_count == 1, "the 503s while unhealthy never reached the upstream"
    assert breaker_state(router) == "closed", "the trial request closed the breaker"
    assert health_state(router) == "healthy"
