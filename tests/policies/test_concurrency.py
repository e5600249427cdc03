from __future__ import annotations

import asyncio
import random

import pytest

from router.policies.concurrency import ConcurrencyLimiter, QueueFull, Slot


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_unlimited_never_waits_and_counts() -> None:
    limiter = ConcurrencyLimiter(None)
    slots = [await limiter.acquire() for _ in range(1000)]
    assert limiter.in_flight == 1000
    for slot in slots:
        slot.release()
    assert limiter.in_flight == 0
    async with limiter.slot():
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0


async def test_within_limit_is_immediate() -> None:
    limiter = ConcurrencyLimiter(2)
    async with limiter.slot(), limiter.slot():
        assert limiter.in_flight == 2
        assert limiter.queued == 0
    assert limiter.in_flight == 0


async def test_no_queue_rejects_at_once() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=0)
    async with limiter.slot():
        with pytest.raises(QueueFull) as info:
            await limiter.acquire()
    assert not info.value.timed_out
    assert info.value.retry_after >= 1.0
    assert "queue is full" in str(info.value)
    assert limiter.in_flight == 0


async def test_queue_full_beyond_max_queue() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=2, queue_timeout=5)
    held = await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
    await settle()
    assert limiter.queued == 2
    with pytest.raises(QueueFull):
        await limiter.acquire()
    held.release()
    first = await waiters[0]
    first.release()
    (await waiters[1]).release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_waiters_are_served_fifo() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=5, queue_timeout=5)
    order: list[int] = []

    async def worker(i: int) -> None:
        async with limiter.slot():
            order.append(i)
            await asyncio.sleep(0)

    held = await limiter.acquire()
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(worker(i)))
        await settle()  # enqueue in a known order
    assert limiter.queued == 5
    held.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_newcomer_cannot_overtake_the_queue() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=1, queue_timeout=5)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    held.release()  # the slot now belongs to the waiter, even before it runs
    assert limiter.in_flight == 1
    newcomer = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not newcomer.done()
    slot = await waiter
    await settle()
    assert not newcomer.done()  # still behind the waiter that holds the slot
    slot.release()
    (await newcomer).release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_queue_timeout_raises_and_leaves_no_trace() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=3, queue_timeout=0.02)
    held = await limiter.acquire()
    with pytest.raises(QueueFull) as info:
        await limiter.acquire()
    assert info.value.timed_out
    assert "waited too long" in str(info.value)
    assert (limiter.in_flight, limiter.queued) == (1, 0)
    held.release()
    assert limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=3, queue_timeout=5)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.queued == 1
    held.release()
    slot = await behind  # skipped the cancelled waiter
    slot.release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)
    async with limiter.slot():
        pass


async def test_cancelled_in_the_tick_it_was_handed_a_slot_passes_it_on() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=3, queue_timeout=5)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await settle()
    held.release()  # hands the slot to `waiter`, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slot = await behind
    assert limiter.in_flight == 1
    slot.release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_cancelled_last_waiter_handed_a_slot_frees_it() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=1, queue_timeout=5)
    held = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    held.release()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_exception_inside_slot_releases_it() -> None:
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("upstream died")
    assert limiter.in_flight == 0


async def test_release_is_idempotent() -> None:
    limiter = ConcurrencyLimiter(2)
    slot = await limiter.acquire()
    other = await limiter.acquire()
    assert isinstance(slot, Slot)
    slot.release()
    slot.release()
    with slot:
        pass
    assert limiter.in_flight == 1
    other.release()
    assert limiter.in_flight == 0


async def test_retry_after_estimates_from_hold_time() -> None:
    clock = FakeClock()
    limiter = ConcurrencyLimiter(2, max_queue=1, queue_timeout=5, clock=clock)
    assert limiter.estimate_retry_after() == 1.0  # no data yet
    slot = await limiter.acquire()
    clock.now += 20
    slot.release()
    assert limiter.estimate_retry_after() == pytest.approx(10.0)  # 20s hold x 1 / 2 slots
    a, b = await limiter.acquire(), await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    with pytest.raises(QueueFull) as info:
        await limiter.acquire()
    assert info.value.retry_after == pytest.approx(20.0)  # (1 queued + 1) x 20 / 2
    a.release()
    (await waiter).release()
    b.release()


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, max_queue=-1)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, queue_timeout=0)


async def test_churn_with_cancellations_and_timeouts_leaks_nothing() -> None:
    rng = random.Random(3)
    limiter = ConcurrencyLimiter(3, max_queue=10, queue_timeout=0.01)
    outcomes: list[str] = []

    async def request() -> None:
        try:
            async with limiter.slot():
                assert limiter.in_flight <= 3
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003]))
            outcomes.append("ok")
        except QueueFull:
            outcomes.append("full")

    tasks = [asyncio.create_task(request()) for _ in range(60)]
    await asyncio.sleep(0)
    for task in rng.sample(tasks, 15):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (limiter.in_flight, limiter.queued) == (0, 0)
    assert "ok" in outcomes and "full" in outcomes
