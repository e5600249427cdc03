"""Thousands of new probe loops start at `START_RATE` a second, not all in one turn of the event loop."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from router import probing
from router.config.models import HealthCheckPolicy
from router.policies import HealthTracker
from router.probing import Prober


async def test_new_loops_start_their_first_probe_at_the_start_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probing, "START_RATE", 100)  # 100 a second: 20 loops start over 0.2 s
    loop = asyncio.get_running_loop()
    first: list[float] = []
    all_started = asyncio.Event()

    async def probe(*_: Any) -> None:
        first.append(loop.time())
        if len(first) == 20:
            all_started.set()

    upstream = SimpleNamespace(name="u", adapter=SimpleNamespace(probe=probe))
    checks: list[Any] = [
        (
            SimpleNamespace(upstream=upstream, model=f"m{i}", endpoint=None, routes=set()),
            HealthTracker(HealthCheckPolicy()),
        )
        for i in range(20)
    ]
    prober = Prober()
    started = loop.time()
    prober.sync(checks)
    try:
        await asyncio.wait_for(all_started.wait(), 5)
    finally:
        await prober.stop()
    assert len(first) == 20
    assert first[0] - started < 0.05  # the first at once, as before
    assert first[-1] - started >= 0.18  # the twentieth some 0.19 s later
