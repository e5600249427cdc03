"""`Runtime.apply` in two phases: a version that fails anywhere before the swap changes nothing served.

In process: each provisioning step is made to raise in turn, and the served table, its breakers,
limiters and pools, the logging, the secrets, the sessions and the served hash must all be exactly as
before; a good table applied afterwards must then go live normally.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import router.runtime as runtime_module
from router.config import RouterConfig, load_config_text
from router.registry import Registry, RegistryPlan
from router.runtime import Runtime
from tests.support.router_server import table

NEW_SECRET = "sekrit-token-0123456789"


def old_config() -> RouterConfig:
    upstreams = {
        "u": {
            "type": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "circuit_breaker": {"failure_threshold": 3},
        },
        "gone": {"type": "openai", "base_url": "http://127.0.0.1:8/v1"},
    }
    routes = [
        {"path": "/chat/u", "model": "m", "upstream": "u"},
        {"path": "/chat/gone", "model": "m", "upstream": "gone"},
    ]
    return load_config_text(table(upstreams, routes), "old.yaml", env={})


def new_config(log_file: Path) -> RouterConfig:
    upstreams = {
        "u": {
            "type": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "circuit_breaker": {"failure_threshold": 7},
            "max_concurrency": 2,
        },
        "n": {"type": "openai", "base_url": "http://127.0.0.1:7/v1", "api_key": NEW_SECRET},
    }
    routes = [
        {"path": "/chat/u", "model": "m", "upstream": "u"},
        {"path": "/chat/n", "model": "m", "upstream": "n"},
    ]
    text = table(
        upstreams,
        routes,
        logging={"level": "debug", "format": "text", "file": str(log_file)},
        sessions={"max_sessions": 5},
    )
    return load_config_text(text, "new.yaml", env={})


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    running = Runtime(old_config())
    await running.startup()
    yield running
    await running.shutdown()


def served_state(running: Runtime) -> dict[str, Any]:
    """Everything a failed version must leave alone, by identity and by value."""
    loaded = running.current
    assert loaded is not None
    upstreams = {r.name: r.upstream for route in loaded.table.routes for r in route.replicas}
    return {
        "loaded": loaded,
        "sha256": running.served_config().sha256,  # type: ignore[union-attr]
        "states": {name: (u, u.breaker.policy, u.limiter, u.config) for name, u in upstreams.items()},
        "pools": dict(running.registry.pools),
        "pool_flags": [(p.retired, p.adapter.session.closed) for p in running.registry.pools.values()],
        "registry_upstreams": dict(running.registry.upstreams),
        "logging": running.logs.settings,
        "sessions": running.sessions.settings,
        "access": running.access,
        "secret_masked": running.redactor(NEW_SECRET) != NEW_SECRET,
        "probes": running.prober.loops(),
    }


def boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("injected failure")


STEPS = [
    (runtime_module, "_check_log_file"),
    (runtime_module, "build_table"),
    (runtime_module, "build_access"),
    (runtime_module, "status_handlers"),
    (runtime_module, "admin_handlers"),
    (runtime_module, "metrics_handlers"),
    (runtime_module, "session_handlers"),
    (runtime_module, "front_doors"),
    (runtime_module, "create_app"),
    (runtime_module, "ChatFastPath"),
    (Registry, "new_upstream"),
    (RegistryPlan, "open"),
]


@pytest.mark.parametrize(("owner", "step"), STEPS, ids=[step for _, step in STEPS])
async def test_a_failure_at_any_provisioning_step_leaves_the_router_as_it_was(
    runtime: Runtime, owner: Any, step: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = served_state(runtime)
    with monkeypatch.context() as patch:
        patch.setattr(owner, step, boom)
        with pytest.raises(RuntimeError, match="injected failure"):
            await runtime.apply(new_config(tmp_path / "router.log"))
    assert served_state(runtime) == before
    assert not (tmp_path / "router.log").exists() or step != "_check_log_file"
    # ...and the next good version goes live, with the changes it brings.
    await runtime.apply(new_config(tmp_path / "router.log"))
    after = served_state(runtime)
    assert after["sha256"] != before["sha256"]
    u = after["states"]["u"]
    assert u[0] is before["states"]["u"][0], "same name and server: the state is kept"
    assert u[1].failure_threshold == 7 and u[2].max_concurrency == 2
    assert after["logging"].level == "debug" and after["sessions"].max_sessions == 5
    assert after["secret_masked"]
    gone = before["states"]["gone"][0]
    assert gone.retired


async def test_an_unopenable_log_file_refuses_the_table_before_the_swap(
    runtime: Runtime, tmp_path: Path
) -> None:
    before = served_state(runtime)
    with pytest.raises(OSError):
        await runtime.apply(new_config(tmp_path / "missing-dir" / "router.log"))
    assert served_state(runtime) == before
