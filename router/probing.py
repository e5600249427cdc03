"""Active health checks: one probe loop per (upstream, model) question, shared by the routes asking it.

Each loop probes at once on start (so `initial` is short; thousands of new loops start at `START_RATE`),
then sleeps the tracker's own delay: the normal interval while healthy, the faster recovery interval while
unhealthy, both jittered so many routes do not probe in lock-step. A probe that times out is a failure.
Loops follow reloads: `sync` starts loops for new questions and stops those no table asks any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from router.errors import RouterError
from router.policies import HealthTracker
from router.registry import HealthKey

log = logging.getLogger("router.probing")


async def probe_once(key: HealthKey, tracker: HealthTracker) -> None:
    """Ask the upstream once and record the answer in the tracker."""
    timeout = tracker.policy.timeout
    started = time.perf_counter()
    try:
        # The adapter bounds its probe too; this bound is the prober's own, so a probe that hangs in an
        # adapter's bug still counts as the failure it is instead of freezing the route's health.
        async with asyncio.timeout(timeout):
            await key.upstream.adapter.probe(key.model, key.endpoint, timeout, _max_age(tracker))
    except TimeoutError:
        tracker.record_probe(False, time.perf_counter() - started, f"probe timed out after {timeout:g}s")
    except RouterError as error:
        tracker.record_probe(False, time.perf_counter() - started, error.message)
    except Exception as error:  # a probe must never kill its loop
        log.exception("probe of %s on %s failed unexpectedly", key.model, key.upstream.name)
        tracker.record_probe(False, time.perf_counter() - started, f"probe failed: {error!r}")
    else:
        tracker.record_probe(True, time.perf_counter() - started, None)


def _max_age(tracker: HealthTracker) -> float:
    """How old a shared answer may be: half the tracker's fastest cadence, so no verdict lags."""
    policy = tracker.policy
    return min(policy.interval, policy.recovery_interval) / 2


ProbeGate = Callable[[HealthKey, HealthTracker], Awaitable[bool]]
"""gate(key, tracker): whether this process runs this probe now (shared state: one prober per question)."""


START_RATE = 10_000
"""New probe loops start at most this many a second: a 10,000-model table's first probes come in a second
instead of all in one turn of the event loop, before the server even listens (a table of a few hundred
starts them within milliseconds, as before)."""


async def _loop(
    key: HealthKey, tracker: HealthTracker, gate: ProbeGate | None = None, delay: float = 0.0
) -> None:
    if delay:
        await asyncio.sleep(delay)
    while True:
        if gate is None or await gate(key, tracker):
            await probe_once(key, tracker)
        await asyncio.sleep(tracker.next_delay())


class Prober:
    """Owns the probe loops: exactly one per health question, however many routes ask it."""

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[asyncio.Task[None], HealthKey, HealthTracker]] = {}
        self.gate: ProbeGate | None = None  # set by shared state: probe only where the fleet's lease is held

    def sync(self, checks: list[tuple[HealthKey, HealthTracker]]) -> None:
        """Run exactly one loop per current health question."""
        wanted = {id(tracker): (key, tracker) for key, tracker in checks}
        for ident, (task, _, _) in list(self._tasks.items()):
            if ident not in wanted:
                task.cancel()
                del self._tasks[ident]
        started = 0
        for ident, (key, tracker) in wanted.items():
            if ident not in self._tasks:
                task = asyncio.get_running_loop().create_task(
                    _loop(key, tracker, self.gate, started / START_RATE),
                    name=f"probe:{key.upstream.name}:{key.model or key.endpoint}",
                )
                self._tasks[ident] = (task, key, tracker)
                started += 1

    async def stop(self) -> None:
        """Stop every loop (shutdown)."""
        tasks = [task for task, _, _ in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> int:
        """Number of probe loops (for /status and tests)."""
        return len(self._tasks)

    def loops(self) -> list[dict[str, Any]]:
        """What each loop asks, of whom, for which routes (for /debug)."""
        return [
            {
                "upstream": key.upstream.name,
                "model": key.model,
                "endpoint": key.endpoint,
                "routes": sorted(key.routes),
                "running": not task.done(),
            }
            for task, key, _ in self._tasks.values()
        ]
