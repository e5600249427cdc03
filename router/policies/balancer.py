"""Pick one replica of a route's model: weighted least in-flight, ties shared in proportion to weight.

The key is in_flight / weight, so under load each replica carries in-flight work in proportion to its
weight and a slow one (whose requests pile up) gets fewer new ones. Exact ties, which is every pick of
idle or sequential traffic, are settled by smooth weighted round robin (nginx's algorithm): a 2:1 pair
splits idle traffic exactly 2:1 and equal replicas rotate. The textbook key (in_flight + 1) / weight was
not used: with it the heaviest replica wins every idle pick (1/2 < 1/1 forever), so sequential traffic
never reaches the others and their faults go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from types import TracebackType

__all__ = ["InFlight", "Replica", "choose"]


def _always() -> bool:
    return True


class Replica:
    """One upstream serving the route's model. Counts its in-flight requests; asks `available` if usable."""

    __slots__ = ("_available", "_credit", "in_flight", "name", "weight")

    def __init__(self, name: str, weight: int = 1, available: Callable[[], bool] | None = None) -> None:
        if weight < 1:
            raise ValueError(f"replica {name!r}: weight must be >= 1, got {weight}")
        self.name = name
        self.weight = weight
        self.in_flight = 0
        self._available = available or _always
        self._credit = 0  # smooth weighted round-robin state

    @property
    def available(self) -> bool:
        return self._available()

    def track(self) -> InFlight:
        """Count one request from now until the handle is released (or its `with` block exits)."""
        self.in_flight += 1
        return InFlight(self)

    def __repr__(self) -> str:
        return f"Replica({self.name!r}, weight={self.weight}, in_flight={self.in_flight})"


class InFlight:
    """Handle of one counted request; `release()` is idempotent, so a stream's finally may call it too."""

    __slots__ = ("_released", "replica")

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.replica.in_flight -= 1

    def __enter__(self) -> Replica:
        return self.replica

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def choose(replicas: Iterable[Replica], exclude: Collection[str] = ()) -> Replica | None:
    """The best available replica whose name is not in `exclude` (e.g. ones a retry already tried).

    Call `track()` on the result before the next await, or concurrent picks will not see it as busy.
    """
    best: list[Replica] = []
    for r in replicas:
        if r.name in exclude or not r.available:
            continue
        if not best:
            best.append(r)
            continue
        # Exact integer comparison of in_flight / weight: float keys would turn ties into near-misses.
        lhs, rhs = r.in_flight * best[0].weight, best[0].in_flight * r.weight
        if lhs < rhs:
            best = [r]
        elif lhs == rhs:
            best.append(r)
    if len(best) <= 1:
        return best[0] if best else None
    total = 0
    chosen = best[0]
    for r in best:
        r._credit += r.weight
        total += r.weight
        if r._credit > chosen._credit:
            chosen = r
    chosen._credit -= total
    return chosen
