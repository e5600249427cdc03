"""Token and request use per client key, route and UTC day, and the daily quotas enforced from it.

Two figures per key and day decide quotas: requests admitted (`requests_per_day`, counted when a request
is admitted, so the check and the count are one atomic step) and tokens used (`tokens_per_day`, prompt
plus completion, estimates included, counted when an answer ends: the check before dispatch reads the
tokens of answers already ended, so a key overshoots its token quota by at most the answers it has in
progress when it reaches it). Beside them, per (key, route) and day: requests, prompt and completion tokens
and how many of those tokens were estimated, for `GET /usage`; the last `KEEP_DAYS` days are kept.

The counters live in the shared-state backend (`state:`): in the process for `memory`, in Redis for
`redis` (one hash a day, `<prefix>usage:<YYYY-MM-DD>`, expiring after `KEEP_DAYS` + 1 days), so every
process of every replica enforces one quota. Counters are named by the key's name, not held by the
table's objects, so a reload that changes a quota applies the new limit to the day's count as it stands.

Days are UTC days of the router's clock; a key over its quota is told to come back at the next UTC
midnight (`Retry-After`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.errors import RouterError
from router.observability.observer import Observer
from router.observability.record import RequestRecord

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from redis.asyncio import Redis

    from router.config.models import AuthSettings

log = logging.getLogger("router.state")

KEEP_DAYS = 7
"""Days of per-(key, route) counters kept (today included) for `GET /usage`."""

DAY = 86400
SEP = "\x1f"  # between the parts of a counter's name (key names and route paths never hold it)
NO_KEY = "-"  # requests of a router without client keys

Admit = Callable[[str | None], Awaitable[None]]
"""quota(principal): count one request against the key's daily quotas; QuotaExceeded (429) when over."""


class QuotaExceeded(RouterError):
    """A key over its `requests_per_day` or `tokens_per_day` (429, Retry-After until UTC midnight)."""

    status = 429
    type = "rate_limit_error"
    code = "quota_exceeded"


@dataclass(frozen=True, slots=True)
class Quota:
    """One key's daily limits (None: no limit of that kind)."""

    requests_per_day: int | None = None
    tokens_per_day: int | None = None


def quotas_of(auth: AuthSettings) -> dict[str, Quota]:
    """The keys of a table that have a daily quota, by name."""
    return {
        key.name: Quota(key.requests_per_day, key.tokens_per_day)
        for key in auth.api_keys
        if key.requests_per_day is not None or key.tokens_per_day is not None
    }


def utc_day(now: float) -> str:
    """The UTC day of a Unix time, as `YYYY-MM-DD`."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def until_midnight(now: float) -> float:
    """Seconds from `now` to the next UTC midnight (when every daily quota starts again)."""
    return DAY - now % DAY


def recent_days(now: float, days: int) -> list[str]:
    """The last `days` UTC days, today first."""
    return [utc_day(now - DAY * back) for back in range(days)]


def _refusal(key: str, quota: Quota, requests: int, tokens: int, now: float) -> QuotaExceeded | None:
    wait = until_midnight(now)
    when = f"it starts again at 00:00 UTC, in {wait / 3600:.1f} h"
    if quota.requests_per_day is not None and requests >= quota.requests_per_day:
        what = f"{quota.requests_per_day} requests a day (requests_per_day)"
    elif quota.tokens_per_day is not None and tokens >= quota.tokens_per_day:
        what = f"{quota.tokens_per_day} tokens a day (tokens_per_day; {tokens} used)"
    else:
        return None
    return QuotaExceeded(
        f"the API key '{key}' has used its quota of {what}; {when}, or ask an operator to raise it",
        retry_after=wait,
    )


@dataclass(slots=True)
class Use:
    """Counters of one (key, route) on one day."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """The JSON form of `GET /usage`."""
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "estimated_tokens": self.estimated_tokens,
        }


def report(
    days: list[tuple[str, dict[tuple[str, str], Use]]],
    quotas: dict[str, Quota],
    today: dict[str, tuple[int, int]],
    now: float,
) -> dict[str, Any]:
    """The document `GET /usage` answers: per day, per key, its totals and its routes; the quotas now."""
    out_days = []
    for day, uses in days:
        keys: dict[str, Any] = {}
        for (key, route), use in sorted(uses.items()):
            entry = keys.setdefault(key, {"total": Use(), "routes": {}})
            total = entry["total"]
            total.requests += use.requests
            total.prompt_tokens += use.prompt_tokens
            total.completion_tokens += use.completion_tokens
            total.estimated_tokens += use.estimated_tokens
            entry["routes"][route] = use.as_dict()
        out_days.append(
            {
                "date": day,
                "keys": {key: {**e["total"].as_dict(), "routes": e["routes"]} for key, e in keys.items()},
            }
        )
    resets = int(now + until_midnight(now))
    out_quotas: dict[str, Any] = {}
    for key, quota in sorted(quotas.items()):
        requests, tokens = today.get(key, (0, 0))
        entry = {}
        if quota.requests_per_day is not None:
            entry["requests_per_day"] = {"limit": quota.requests_per_day, "used": requests}
        if quota.tokens_per_day is not None:
            entry["tokens_per_day"] = {"limit": quota.tokens_per_day, "used": tokens}
        out_quotas[key] = {**entry, "resets_at": resets}
    return {"days": out_days, "quotas": out_quotas, "keep_days": KEEP_DAYS, "now": now}


class UsageLedger(Observer):
    """The use counters of one process's view of the shared state; an observer of finished requests.

    `quota(quotas)` makes the admission step of a table version (None when no key has a quota); every
    finished request that was admitted adds its tokens. Subclasses store the counters.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.quotas: dict[str, Quota] = {}  # the served table's, for the gauges and /usage

    def request_finished(self, record: RequestRecord) -> None:
        if not record.admitted:
            return
        prompt = record.prompt_tokens or 0
        completion = record.completion_tokens or 0
        estimated = (prompt if record.prompt_estimated else 0) + (
            completion if record.completion_estimated else 0
        )
        self.add(record.principal or NO_KEY, record.route, prompt, completion, estimated)

    @abstractmethod
    def add(self, key: str, route: str, prompt: int, completion: int, estimated: int) -> None:
        """Count one admitted request's tokens (its request against `quota` was counted at admission)."""

    @abstractmethod
    def quota(self, quotas: dict[str, Quota]) -> Admit | None:
        """The admission step enforcing `quotas` (None when there are none)."""

    @abstractmethod
    def today(self, key: str) -> tuple[int, int]:
        """(requests, tokens) of `key` today, as this process knows them (exact in memory)."""

    @abstractmethod
    async def report(self, days: int) -> dict[str, Any]:
        """The `GET /usage` document for the last `days` days."""

    async def start(self) -> None:
        """Start background work (Redis: flushing and refreshing)."""

    async def close(self) -> None:
        """Shutdown: send what is still pending (Redis), briefly."""

    def collector(self) -> Collector:
        """`router_quota_used{key,quota}` and `router_quota_limit{key,quota}`, read at scrape time."""
        return QuotaCollector(self)


class QuotaCollector(Collector):
    """The quota gauges of the keys that have quotas in the served table."""

    def __init__(self, ledger: UsageLedger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "router_quota_used",
            "Today's (UTC) use of each key's daily quota: requests admitted, or tokens of answers ended.",
            labels=["key", "quota"],
        )
        limit = GaugeMetricFamily(
            "router_quota_limit", "Each key's daily quota (auth.api_keys[]).", labels=["key", "quota"]
        )
        for key, quota in sorted(self.ledger.quotas.items()):
            requests, tokens = self.ledger.today(key)
            if quota.requests_per_day is not None:
                used.add_metric([key, "requests_per_day"], requests)
                limit.add_metric([key, "requests_per_day"], quota.requests_per_day)
            if quota.tokens_per_day is not None:
                used.add_metric([key, "tokens_per_day"], tokens)
                limit.add_metric([key, "tokens_per_day"], quota.tokens_per_day)
        yield used
        yield limit


class MemoryUsage(UsageLedger):
    """Counters in this process (`state.backend: memory`): exact, and gone when the process ends."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.days: dict[str, dict[tuple[str, str], Use]] = {}
        self.totals: dict[str, dict[str, list[int]]] = {}  # day -> key -> [requests, tokens]
        # The day of the last call and the Unix times it spans: every request asks, and formatting the
        # date each time showed in profiles. A clock that goes back falls outside the span and is looked up.
        self._today = ""
        self._today_from = self._today_until = 0.0

    def _day(self, now: float) -> str:
        if self._today_from <= now < self._today_until:
            return self._today
        day = utc_day(now)
        self._today_from = now - now % DAY
        self._today_until = self._today_from + DAY
        self._today = day
        if day not in self.days:
            self.days[day] = {}
            self.totals[day] = {}
            keep = set(recent_days(now, KEEP_DAYS))
            for old in [d for d in self.days if d not in keep]:  # bounded: keys x routes x KEEP_DAYS
                del self.days[old]
                self.totals.pop(old, None)
        return day

    def add(self, key: str, route: str, prompt: int, completion: int, estimated: int) -> None:
        day = self._day(self.clock())
        uses = self.days[day]
        use = uses.get((key, route))
        if use is None:
            use = uses[(key, route)] = Use()
        use.requests += 1
        use.prompt_tokens += prompt
        use.completion_tokens += completion
        use.estimated_tokens += estimated
        total = self.totals[day].get(key)
        if total is None:
            total = self.totals[day][key] = [0, 0]
        total[1] += prompt + completion

    def count_request(self, key: str, quota: Quota, now: float) -> None:
        """Admit one request of `key` against `quota`, or raise QuotaExceeded."""
        day = self._day(now)
        total = self.totals[day].get(key)
        if total is None:
            total = self.totals[day][key] = [0, 0]
        refusal = _refusal(key, quota, total[0], total[1], now)
        if refusal is not None:
            raise refusal
        total[0] += 1

    def seen(self, key: str, now: float, requests: int, tokens: int) -> None:
        """The shared store's count of the day for `key`: the base to go on from if it is lost."""
        total = self.totals[self._day(now)].setdefault(key, [0, 0])
        total[0], total[1] = max(total[0], requests), max(total[1], tokens)

    def quota(self, quotas: dict[str, Quota]) -> Admit | None:
        if not quotas:
            return None

        async def admit(principal: str | None) -> None:
            quota = quotas.get(principal) if principal is not None else None
            if quota is not None:
                self.count_request(principal, quota, self.clock())  # type: ignore[arg-type]

        return admit

    def today(self, key: str) -> tuple[int, int]:
        total = self.totals.get(utc_day(self.clock()), {}).get(key)
        return (total[0], total[1]) if total else (0, 0)

    async def report(self, days: int) -> dict[str, Any]:
        now = self.clock()
        listed = [(day, dict(self.days.get(day, {}))) for day in recent_days(now, days)]
        today = {key: self.today(key) for key in self.quotas}
        return report(listed, self.quotas, today, now)


# ---- Redis -----------------------------------------------------------------------------------------

QUOTA = """
local r = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local t = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local rl, tl = tonumber(ARGV[3]), tonumber(ARGV[4])
if (rl >= 0 and r >= rl) or (tl >= 0 and t >= tl) then return {1, r, t} end
r = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {0, r, t}
"""
"""quota(day hash; requests field, tokens field, requests limit or -1, tokens limit or -1, ttl) ->
{0 admitted | 1 refused, requests, tokens}: the check and the count in one atomic step."""

_TTL = DAY * (KEEP_DAYS + 1)
_FIELDS = ("r", "p", "c", "e")  # requests, prompt, completion, estimated, per (key, route)


def _field(kind: str, key: str, route: str = "") -> str:
    return f"{kind}{SEP}{key}{SEP}{route}"


class RedisHandle(Protocol):
    """What the Redis ledger uses of `router.state.redis.RedisState` (named here, not imported: no cycle)."""

    prefix: str
    timeout: float
    client: Redis
    closing: bool

    @property
    def up(self) -> bool: ...

    def lost(self, error: BaseException) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None: ...

    async def call(self, coro: Coroutine[Any, Any, Any], what: str) -> Any: ...


class RedisUsage(UsageLedger):
    """Counters in Redis, shared by every process. Token counts are sent in batches, one pipeline per
    event-loop turn (`HINCRBY`s and an `EXPIRE`), after the answers left; while Redis is lost they wait
    in the process (bounded by keys x routes x 4 counters a day) and quotas are checked against the last
    shared count this process saw plus its own admissions since (`MemoryUsage`), so traffic goes on and
    the fleet admits at most processes x what was left of the quota."""

    def __init__(self, state: RedisHandle, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.state = state
        self.prefix = f"{state.prefix}usage:"
        self.script = state.client.register_script(QUOTA)
        self.pending: dict[tuple[str, str], int] = {}  # (day, field) -> increment not yet in Redis
        self.flushing = False
        self.cache: dict[str, tuple[str, int, int]] = {}  # key -> (day, requests, tokens) last seen
        self.local = MemoryUsage(clock)  # quotas while Redis is lost

    def add(self, key: str, route: str, prompt: int, completion: int, estimated: int) -> None:
        self.local.add(key, route, prompt, completion, estimated)
        day = utc_day(self.clock())
        pending = self.pending
        for kind, value in (("r", 1), ("p", prompt), ("c", completion), ("e", estimated)):
            if value:
                field = (day, _field(kind, key, route))
                pending[field] = pending.get(field, 0) + value
        tokens = prompt + completion
        if tokens:
            field = (day, _field("T", key))
            pending[field] = pending.get(field, 0) + tokens
        if not self.flushing:
            self.flushing = True
            self.state.spawn(self.flush(), "usage:flush")

    async def flush(self) -> None:
        """Send the pending increments in one pipeline; on failure keep them for the next try."""
        try:
            await asyncio.sleep(0)  # let this turn's other answers add theirs
            batch, self.pending = self.pending, {}
            if not batch or not self.state.up:
                self._keep(batch)
                return
            pipe = self.state.client.pipeline(transaction=False)
            for (day, field), value in batch.items():
                pipe.hincrby(self.prefix + day, field, value)
            for day in {day for day, _ in batch}:
                pipe.expire(self.prefix + day, _TTL)
            try:
                async with asyncio.timeout(self.state.timeout):
                    await pipe.execute()
            except Exception as error:  # lost Redis: counted again when it answers
                self.state.lost(error)
                self._keep(batch)
        finally:
            self.flushing = False

    def _keep(self, batch: dict[tuple[str, str], int]) -> None:
        for field, value in batch.items():
            self.pending[field] = self.pending.get(field, 0) + value

    async def start(self) -> None:
        self.state.spawn(self._refresh_loop(), "usage:refresh")

    async def close(self) -> None:
        if self.pending and self.state.up:  # answers that ended during the drain
            self.flushing = True
            await self.flush()

    async def _refresh_loop(self) -> None:
        """Every second: send what is pending, read the quota keys' day totals (for the gauges)."""
        while not self.state.closing:
            await asyncio.sleep(1.0)
            if not self.state.up:
                continue
            if self.pending and not self.flushing:
                self.flushing = True
                await self.flush()
            keys = sorted(self.quotas)
            if not keys:
                continue
            day = utc_day(self.clock())
            fields = [f for key in keys for f in (_field("R", key), _field("T", key))]
            try:
                async with asyncio.timeout(self.state.timeout):
                    values = await self.state.client.hmget(self.prefix + day, fields)
            except Exception as error:
                self.state.lost(error)
                continue
            now = self.clock()
            for i, key in enumerate(keys):
                requests, tokens = int(values[2 * i] or 0), int(values[2 * i + 1] or 0)
                self.cache[key] = (day, requests, tokens)
                self.local.seen(key, now, requests, tokens)

    def quota(self, quotas: dict[str, Quota]) -> Admit | None:
        if not quotas:
            return None
        state, script, prefix = self.state, self.script, self.prefix

        async def admit(principal: str | None) -> None:
            quota = quotas.get(principal) if principal is not None else None
            if quota is None:
                return
            assert principal is not None
            now = self.clock()
            day = utc_day(now)
            found = None
            if state.up:
                args: list[str | int] = [
                    _field("R", principal),
                    _field("T", principal),
                    -1 if quota.requests_per_day is None else quota.requests_per_day,
                    -1 if quota.tokens_per_day is None else quota.tokens_per_day,
                    _TTL,
                ]
                try:
                    async with asyncio.timeout(state.timeout):
                        found = await script(keys=[prefix + day], args=args)
                except Exception as error:
                    state.lost(error)
            if found is None:  # Redis lost: go on from the last shared count seen, with this process's own
                # admissions, which are sent to Redis when it is back
                self.local.count_request(principal, quota, now)
                field = (day, _field("R", principal))
                self.pending[field] = self.pending.get(field, 0) + 1
                return
            refused, requests, tokens = int(found[0]), int(found[1]), int(found[2])
            self.cache[principal] = (day, requests, tokens)
            self.local.seen(principal, now, requests, tokens)
            if refused:
                refusal = _refusal(principal, quota, requests, tokens, now)
                if refusal is not None:
                    raise refusal

        return admit

    def today(self, key: str) -> tuple[int, int]:
        day = utc_day(self.clock())
        cached = self.cache.get(key)
        if cached is None or cached[0] != day:
            return self.local.today(key)
        return cached[1], cached[2]

    async def report(self, days: int) -> dict[str, Any]:
        now = self.clock()
        listed_days = recent_days(now, days)
        pipe = self.state.client.pipeline(transaction=False)
        for day in listed_days:
            pipe.hgetall(self.prefix + day)
        found = await self.state.call(pipe.execute(), "reading the usage counters")
        listed = []
        today: dict[str, tuple[int, int]] = {}
        for day, fields in zip(listed_days, found, strict=True):
            uses: dict[tuple[str, str], Use] = {}
            for raw, value in fields.items():
                kind, key, route = raw.decode().split(SEP, 2)
                if kind in ("R", "T"):
                    if day == listed_days[0]:
                        requests, tokens = today.get(key, (0, 0))
                        today[key] = (int(value), tokens) if kind == "R" else (requests, int(value))
                    continue
                use = uses.get((key, route))
                if use is None:
                    use = uses[(key, route)] = Use()
                setattr(use, _ATTRS[kind], int(value))
            listed.append((day, uses))
        return report(listed, self.quotas, today, now)


_ATTRS = dict(
    zip(_FIELDS, ("requests", "prompt_tokens", "completion_tokens", "estimated_tokens"), strict=True)
)
