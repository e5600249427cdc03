"""Breaker and health transitions shared between router processes through Redis.

A transition one process sees (a breaker opens or closes, a route turns unhealthy or recovers) is written
to a state key (`<prefix>breaker`, `<prefix>health`, hashes by upstream NAME and by (upstream, model)) and
published on `<prefix>transitions`. Every other process adopts it through `CircuitBreaker.adopt` /
`HealthTracker.adopt`, so the registry's usual hooks log it and put it on /events, and /status shows it:
all processes fail fast together and recover together. On (re)subscribing, the stored states are read
back, so a process that starts, or lost Redis for a while, catches up.

Half-open is not shared: the open period's end (`until`, wall clock) is, and each process turns half_open
by itself when it passes. Health probes run once per question across the fleet: whoever holds the lease
`<prefix>lease:<upstream>\\x1f<model>` probes, the others adopt its verdicts (`probe_gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from redis.asyncio import Redis

from router.config.models import StateSettings
from router.policies import BreakerState, CircuitBreaker, HealthState, HealthTracker
from router.state.backend import ReplicaFinder

if TYPE_CHECKING:
    from router.registry import HealthKey

log = logging.getLogger("router.state")

_SEP = "\x1f"


class RedisLink(Protocol):
    """What the sync needs of the Redis backend (`router.state.redis.RedisState`): its client and clock,
    its key prefix and scripts, and how to report a lost connection. Narrow, so the two halves of the
    backend do not import each other."""

    client: Redis
    closing: bool
    origin: str
    prefix: str
    scripts: dict[str, Any]
    settings: StateSettings
    timeout: float

    @property
    def up(self) -> bool:
        """Whether Redis answers now."""

    def lost(self, error: BaseException) -> None:
        """Redis stopped answering."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a background task that lives as long as the backend."""


class StateSync:
    """Publishes this process's transitions and adopts the others'; the registry calls the first two."""

    def __init__(self, state: RedisLink, find: ReplicaFinder) -> None:
        self.state = state
        self.find = find
        self.channel = f"{state.prefix}transitions"
        self.breaker_key = f"{state.prefix}breaker"
        self.health_key = f"{state.prefix}health"
        self._adopting = False  # a transition being adopted must not be published back
        self.adopted = 0

    # ---- outgoing: the registry's hooks --------------------------------------------------------------

    def breaker_changed(self, upstream: str, new: BreakerState, breaker: CircuitBreaker, reason: str) -> None:
        """A local breaker changed state; share open and closed (half_open follows from `until`)."""
        if self._adopting or new is BreakerState.HALF_OPEN:
            return
        until = time.time() + breaker.retry_after() if new is BreakerState.OPEN else None
        record = {"state": str(new), "until": until, "reason": reason}
        self._publish("breaker", self.breaker_key, upstream, record, upstream=upstream)

    def health_changed(self, upstream: str, what: str | None, new: HealthState, reason: str) -> None:
        """A local health verdict changed; share it (keyed by upstream name and model or endpoint)."""
        if self._adopting or new is HealthState.INITIAL:
            return
        field = upstream + _SEP + (what or "")
        record = {"state": str(new), "reason": reason}
        self._publish("health", self.health_key, field, record, upstream=upstream, what=what or "")

    def _publish(self, kind: str, key: str, field: str, record: dict[str, Any], **where: Any) -> None:
        state = self.state
        if not state.up:
            return  # Redis lost: this process acts alone until it is back
        message = msgspec.json.encode({"kind": kind, "origin": state.origin, **where, **record})
        stored = msgspec.json.encode({"origin": state.origin, **record})

        async def send() -> None:
            try:
                async with asyncio.timeout(state.timeout):
                    async with state.client.pipeline(transaction=True) as pipe:
                        pipe.hset(key, field, stored)
                        pipe.publish(self.channel, message)
                        await pipe.execute()
            except Exception as error:
                state.lost(error)

        state.spawn(send(), f"state:publish:{kind}")

    # ---- incoming ------------------------------------------------------------------------------------

    async def listen(self, resubscribe: asyncio.Event) -> None:
        """Subscribe, read the stored states, then adopt every message; start again after a loss."""
        state = self.state
        while not state.closing:
            if not state.up:
                await resubscribe.wait()
                if state.closing:
                    return
            resubscribe.clear()
            pubsub = state.client.pubsub()
            try:
                async with asyncio.timeout(max(state.timeout, state.settings.connect_timeout)):
                    await pubsub.subscribe(self.channel)
                await self.catch_up()
                while not resubscribe.is_set():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=state.settings.ping_interval
                    )
                    if message is not None and message.get("type") == "message":
                        self.apply(_decode(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if state.closing:
                    return
                state.lost(error)
                await asyncio.sleep(state.settings.ping_interval)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def catch_up(self) -> None:
        """Adopt every stored breaker and health state (after subscribing, so nothing falls between)."""
        state = self.state
        async with asyncio.timeout(state.timeout * 4):
            breakers = await state.client.hgetall(self.breaker_key)
            healths = await state.client.hgetall(self.health_key)
        # A stored record may be older than what this process saw alone while Redis was lost: take only
        # what cannot be stale in a harmful way (an open period still running; a verdict for a tracker
        # that has none yet). Live messages are always taken.
        for field, raw in breakers.items():
            record = _decode(raw)
            if record.get("state") == str(BreakerState.OPEN):
                self.apply({**record, "kind": "breaker", "upstream": _text(field)})
        for field, raw in healths.items():
            upstream, _, what = _text(field).partition(_SEP)
            record = {**_decode(raw), "kind": "health", "upstream": upstream, "what": what}
            self.apply(record, only_initial=True)

    def apply(self, message: dict[str, Any], only_initial: bool = False) -> None:
        """Adopt one transition of another process (own messages are ignored)."""
        if message.get("origin") == self.state.origin:
            return
        reason = f"shared by another router process: {message.get('reason', '')}"
        self._adopting = True
        try:
            if message.get("kind") == "breaker":
                self._adopt_breaker(message, reason)
            elif message.get("kind") == "health":
                self._adopt_health(message, reason, only_initial)
        except Exception:
            log.exception("could not adopt a shared transition: %r", message)
        finally:
            self._adopting = False

    def _adopt_breaker(self, message: dict[str, Any], reason: str) -> None:
        new = BreakerState(message["state"])
        until = None
        if new is BreakerState.OPEN:
            until = time.monotonic() + (float(message["until"]) - time.time())
        seen: set[int] = set()
        for upstream, breaker, _, _ in self.find():
            if upstream == message["upstream"] and id(breaker) not in seen:
                seen.add(id(breaker))
                self.adopted += breaker.adopt(new, until, reason)

    def _adopt_health(self, message: dict[str, Any], reason: str, only_initial: bool) -> None:
        new = HealthState(message["state"])
        seen: set[int] = set()
        for upstream, _, what, tracker in self.find():
            if tracker is None or id(tracker) in seen:
                continue
            if only_initial and tracker.state is not HealthState.INITIAL:
                continue
            if upstream == message["upstream"] and (what or "") == message["what"]:
                seen.add(id(tracker))
                self.adopted += tracker.adopt(new, reason)

    # ---- probe leases --------------------------------------------------------------------------------

    async def probe_gate(self, key: HealthKey, tracker: HealthTracker) -> bool:
        """Whether this process should run this probe now: it holds (or took) the fleet's lease for it.

        With Redis lost every process probes for itself, as a single router would.
        """
        state = self.state
        if not state.up:
            return True
        policy = tracker.policy
        longest = max(policy.interval, policy.recovery_interval) * (1 + policy.jitter)
        ttl_ms = int((2 * longest + policy.timeout) * 1000)
        what = key.model or key.endpoint or ""
        lease = f"{state.prefix}lease:{key.upstream.name}{_SEP}{what}"
        try:
            async with asyncio.timeout(state.timeout):
                held = await state.scripts["lease"](keys=[lease], args=[state.origin, ttl_ms])
        except Exception as error:
            state.lost(error)
            return True
        return bool(held)


def _decode(raw: bytes | str) -> dict[str, Any]:
    """A stored or published record; anything else (a stranger on the channel) is an empty one."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        log.warning("shared state: ignored a record that is not JSON: %r", raw[:200])
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def replica_finder(current: Any) -> ReplicaFinder:
    """Every (upstream name, breaker, model or endpoint, tracker) of the table `current()` serves."""

    def find() -> list[tuple[str, CircuitBreaker, str | None, HealthTracker | None]]:
        loaded = current()
        if loaded is None:
            return []
        found = []
        for route in loaded.table.routes:
            for replica in route.replicas:
                tracker = replica.health
                what = (tracker.policy.endpoint or route.model) if tracker is not None else None
                found.append((replica.upstream.name, replica.upstream.breaker, what, tracker))
        return found

    return find
