"""Failed health probes must not pile up in memory while an upstream stays down.

A shared probe failure is one exception object. Raised as it is, again and again, it gathered every
raiser's frames; and each fresh failure, raised through a frame that still held the stale cached one,
kept that one alive, which kept the one before it: an upstream down for a day grew the router's memory
by every probe it failed (about 3 kB each). These tests count the failures alive after many probes.
"""

from __future__ import annotations

import gc
import time

import pytest

from router.config.models import UpstreamConfig
from router.upstreams import build_adapter
from router.upstreams.errors import UpstreamUnavailable
from tests.support.router_server import RunningRouter, free_port, table

PROBES = 40


def alive_failures() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, UpstreamUnavailable))


def traceback_length(error: BaseException) -> int:
    n, tb = 0, error.__traceback__
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_failed_probes_do_not_keep_each_other_alive(kind: str) -> None:
    base = f"http://127.0.0.1:{free_port()}" + ("/v1" if kind == "openai" else "")
    adapter = build_adapter(UpstreamConfig(name="gone", type=kind, base_url=base))
    try:
        before = alive_failures()
        for _ in range(PROBES):
            with pytest.raises(UpstreamUnavailable):
                await adapter.probe("m", None, 2.0, max_age=0.0)  # every probe fetches, and fails
        # the last failure stays cached (and one may be in flight); the other 39 are gone
        assert alive_failures() - before <= 2
    finally:
        await adapter.close()


async def test_a_shared_failure_is_raised_with_a_fresh_traceback() -> None:
    adapter = build_adapter(
        UpstreamConfig(name="gone", type="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    )
    try:
        lengths = []
        for _ in range(PROBES):  # one fetch, then the cached failure answers every probe
            try:
                await adapter.probe("m", None, 2.0, max_age=60.0)
            except UpstreamUnavailable as error:
                lengths.append(traceback_length(error))
        assert len(lengths) == PROBES
        assert lengths[-1] <= lengths[1], (
            f"the shared failure's traceback grew: {lengths[:3]}...{lengths[-3:]}"
        )
    finally:
        await adapter.close()


def test_a_router_probing_a_dead_upstream_keeps_its_memory_flat() -> None:
    """Over real sockets: the router's own probe loop against a closed port, 20 probes a second."""
    text = table(
        upstreams={"gone": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"}},
        routes=[{"path": "/chat/m", "model": "m", "upstream": "gone"}],
        defaults={
            "health_check": {
                "enabled": True,
                "interval": 0.05,
                "recovery_interval": 0.05,
                "timeout": 1,
                "jitter": 0,
            }
        },
    )
    with RunningRouter.from_yaml(text) as router:
        time.sleep(0.5)  # the route is unhealthy by now; the loop keeps probing

        def state() -> int:
            return router.sync(alive_failures)

        first = state()
        time.sleep(2.0)  # some 40 more failed probes
        assert state() - first <= 2
