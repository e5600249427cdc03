from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from router.policies.balancer import InFlight, Replica, choose


def picks(replicas: list[Replica], n: int, *, hold: bool) -> Counter[str]:
    counts: Counter[str] = Counter()
    held: list[InFlight] = []
    for _ in range(n):
        chosen = choose(replicas)
        assert chosen is not None
        counts[chosen.name] += 1
        handle = chosen.track()
        if hold:
            held.append(handle)
        else:
            handle.release()
    for handle in held:
        handle.release()
    return counts


def test_nothing_to_choose() -> None:
    assert choose([]) is None
    down = Replica("a", available=lambda: False)
    assert choose([down]) is None
    assert choose([Replica("a"), Replica("b")], exclude={"a", "b"}) is None


def test_skips_unavailable_and_excluded() -> None:
    up = {"a": False, "b": True, "c": True}

    def probe(name: str) -> Callable[[], bool]:
        return lambda: up[name]

    replicas = [Replica(name, available=probe(name)) for name in "abc"]
    assert {choose(replicas, exclude=("b",)).name for _ in range(10)} == {"c"}  # type: ignore[union-attr]
    up["a"] = True
    assert {choose(replicas, exclude=["b", "c"]).name for _ in range(10)} == {"a"}  # type: ignore[union-attr]


def test_availability_is_asked_at_each_pick() -> None:
    up = True
    replica = Replica("a", available=lambda: up)
    assert replica.available
    up = False
    assert not replica.available
    assert choose([replica]) is None


def test_equal_idle_replicas_rotate() -> None:
    replicas = [Replica("a"), Replica("b"), Replica("c")]
    names = [choose(replicas).name for _ in range(6)]  # type: ignore[union-attr]
    assert sorted(names[:3]) == ["a", "b", "c"]
    assert names[3:] == names[:3]


def test_weights_split_idle_traffic_exactly() -> None:
    counts = picks([Replica("big", weight=2), Replica("small", weight=1)], 300, hold=False)
    assert counts == {"big": 200, "small": 100}


def test_weights_split_held_traffic_two_to_one() -> None:
    replicas = [Replica("big", weight=2), Replica("small", weight=1)]
    counts = picks(replicas, 300, hold=True)
    assert counts["big"] / counts["small"] == pytest.approx(2.0, rel=0.05)
    assert [r.in_flight for r in replicas] == [0, 0]


def test_uneven_weights_under_load() -> None:
    replicas = [Replica("a", weight=5), Replica("b", weight=3), Replica("c", weight=1)]
    counts = picks(replicas, 900, hold=True)
    assert counts["a"] == pytest.approx(500, abs=10)
    assert counts["b"] == pytest.approx(300, abs=10)
    assert counts["c"] == pytest.approx(100, abs=10)


def test_least_in_flight_wins() -> None:
    busy, idle = Replica("busy"), Replica("idle")
    handles = [busy.track() for _ in range(3)]
    assert {choose([busy, idle]).name for _ in range(5)} == {"idle"}  # type: ignore[union-attr]
    for handle in handles:
        handle.release()


def test_slow_replica_gets_less_new_work() -> None:
    # "slow" never finishes its requests, "fast" finishes each at once: new work flows to "fast".
    slow, fast = Replica("slow", weight=2), Replica("fast", weight=1)
    counts: Counter[str] = Counter()
    for _ in range(100):
        chosen = choose([slow, fast])
        assert chosen is not None
        counts[chosen.name] += 1
        handle = chosen.track()
        if chosen is fast:
            handle.release()
    assert counts["slow"] <= 2
    assert counts["fast"] >= 98


def test_weight_ties_share_by_weight_with_weighted_in_flight_equal() -> None:
    # big has 2 in flight on weight 2, small 1 on weight 1: same load, so the idle split applies.
    big, small = Replica("big", weight=2), Replica("small", weight=1)
    held = [big.track(), big.track(), small.track()]
    counts: Counter[str] = Counter()
    for _ in range(30):
        chosen = choose([big, small])
        assert chosen is not None
        counts[chosen.name] += 1
    assert counts == {"big": 20, "small": 10}
    for handle in held:
        handle.release()


def test_track_counts_and_release_is_idempotent() -> None:
    replica = Replica("a")
    with replica.track() as r:
        assert r is replica
        assert replica.in_flight == 1
    assert replica.in_flight == 0
    handle = replica.track()
    handle.release()
    handle.release()
    with handle:
        pass
    assert replica.in_flight == 0


def test_rejects_bad_weight() -> None:
    with pytest.raises(ValueError, match="weight"):
        Replica("a", weight=0)
