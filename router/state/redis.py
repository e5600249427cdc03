"""The Redis backend: sessions, rate limits and transitions shared by every process of every replica.

Every call is bounded by `state.timeout`. A call that fails or times out marks Redis as lost at once; from
then on nothing waits for it: rate limits fall back to this process's own buckets, session turns answer
503 with Retry-After, breakers and health go on locally. A monitor pings every `state.ping_interval` and,
when Redis answers again, shared behaviour resumes (and the transition channel is subscribed anew, with
the stored breaker and health states read back), without a restart.

Multi-key updates are Lua scripts, so each is atomic however many routers call at once. Scripts build
some key names themselves (eviction of other sessions), so this needs one Redis (or a primary with
replicas / Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from router.config.models import StateSettings
from router.security.access import Access, RateLimited
from router.security.keys import KeyAccess
from router.security.ratelimit import TokenBucket
from router.security.redact import public_url
from router.sessions import SessionStore, check_session_id, encode_message, message_size, not_found
from router.state.backend import Admit, ReplicaFinder, SessionBackend, SharedState, StateUnavailable
from router.state.scripts import DELETE, HISTORY, LEASE, RECORD, TAKE_TOKEN

if TYPE_CHECKING:
    from router.probing import Prober
    from router.registry import Registry
    from router.state.usage import UsageLedger

log = logging.getLogger("router.state")

T = TypeVar("T")

_FAILURES = (RedisError, OSError, TimeoutError, ConnectionError)
_RETRY_AFTER = 2.0  # what a 503 for lost shared state tells the client: Redis usually returns in seconds


class RedisState(SharedState):
    """One process's connection to the shared Redis, and whether Redis answers."""

    backend = "redis"

    def __init__(self, settings: StateSettings) -> None:
        assert settings.url is not None, "the schema requires state.url with backend redis"
        self.settings = settings
        self.prefix = settings.key_prefix
        self.timeout = settings.timeout
        self.url = public_url(settings.url.get_secret_value())
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.client = _client(settings)
        self._up = False
        self._sessions: int | None = None  # conversations stored, as of the last ping
        self._lost_at: float | None = time.time()
        self._last_error: str | None = None
        self._errors = 0
        self._resubscribe = asyncio.Event()
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fallback: dict[tuple[bytes, int], TokenBucket] = {}  # per-process buckets while Redis is lost
        self.scripts = {
            name: self.client.register_script(text)
            for name, text in {
                "take": TAKE_TOKEN,
                "record": RECORD,
                "history": HISTORY,
                "delete": DELETE,
                "lease": LEASE,
            }.items()
        }
        self.sync: Any = None  # router.state.sync.StateSync once attached

    # ---- lifecycle and health ----------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    async def start(self) -> None:
        await self._ping()  # a reachable Redis is up before the first request; an absent one is only logged
        if not self._up:
            log.warning(
                "shared state: Redis at %s does not answer (%s); serving from local state until it does",
                self.url,
                self._last_error,
            )
        self.spawn(self._monitor(), "state:monitor")

    async def close(self) -> None:
        # The Redis client may turn a cancellation into a connection error, so the loops also watch
        # `closing`, and shutdown waits for them only so long: it must never hang on Redis.
        self.closing = True
        self._resubscribe.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        with contextlib.suppress(*_FAILURES):
            async with asyncio.timeout(2):
                await self.client.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `coro` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _monitor(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.settings.ping_interval)
            await self._ping()

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(max(self.timeout, self.settings.connect_timeout)):
                self._sessions = int(await self.client.zcard(f"{self.prefix}sessions"))
        except _FAILURES as error:
            self.lost(error)
        else:
            self._found()

    def lost(self, error: BaseException) -> None:
        """A call failed: Redis counts as lost until a ping answers again."""
        self._errors += 1
        self._last_error = f"{type(error).__name__}: {error}"[:300]
        if self._up:
            self._up = False
            self._lost_at = time.time()
            log.warning(
                "shared state: Redis at %s lost (%s); serving from local state: rate limits per process, "
                "session turns refused with 503, breakers and health per process, until it answers again",
                self.url,
                self._last_error,
            )

    def _found(self) -> None:
        if self._up:
            return
        first = self._errors == 0
        self._up = True
        self._lost_at = None
        self._resubscribe.set()
        if first:
            log.info("shared state: Redis at %s", self.url)
        else:
            log.warning("shared state: Redis at %s answers again; shared behaviour resumed", self.url)

    async def call(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run one Redis call within `state.timeout`; StateUnavailable (and Redis marked lost) otherwise."""
        if not self._up:
            coro.close()
            raise self.unavailable(what)
        try:
            async with asyncio.timeout(self.timeout):
                return await coro
        except ResponseError as error:  # Redis answered: a refused command is not a lost Redis
            log.error("shared state: Redis refused %s: %s", what, error)
            raise self.unavailable(what) from None
        except _FAILURES as error:
            self.lost(error)
            raise self.unavailable(what) from None

    def unavailable(self, what: str) -> StateUnavailable:
        return StateUnavailable(
            f"the router's shared state (Redis) is not reachable, so {what} cannot be done safely now; "
            "retry shortly",
            retry_after=_RETRY_AFTER,
        )

    def status(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "up": self._up,
            "url": self.url,
            "key_prefix": self.prefix,
            "lost_since": self._lost_at,
            "errors": self._errors,
            "last_error": self._last_error,
            "origin": self.origin,
            "sessions": self._sessions,  # every process's conversations (the `sessions` section is local)
        }

    # ---- the seams ---------------------------------------------------------------------------------

    def sessions(self, store: SessionStore) -> SessionBackend:
        return RedisSessions(self, store)

    def admission(self, access: Access) -> Admit | None:
        if not isinstance(access, KeyAccess):
            return None
        limits: dict[str, tuple[str, int, TokenBucket]] = {}
        for key in access.api_keys:
            if key.per_minute is None:
                continue
            key.bucket = None  # the shared bucket below replaces the process's own
            ident = (key.digest, key.per_minute)
            fallback = self._fallback.get(ident)
            if fallback is None:
                fallback = self._fallback[ident] = TokenBucket(key.per_minute)
            bucket = f"{self.prefix}rl:{_short(key.digest)}:{key.per_minute}"
            limits[key.name] = (bucket, key.per_minute, fallback)
        if not limits:
            return None
        take = self.scripts["take"]

        async def admit(principal: str | None) -> None:
            entry = limits.get(principal) if principal is not None else None
            if entry is None:
                return
            bucket, per_minute, fallback = entry
            wait = None
            if self._up:
                try:
                    async with asyncio.timeout(self.timeout):
                        wait = float(await take(keys=[bucket], args=[per_minute]))
                except _FAILURES as error:
                    self.lost(error)
            if wait is None:
                wait = fallback.take()  # Redis lost: this process's own bucket, so traffic goes on
            if wait:
                raise RateLimited(
                    f"the API key '{principal}' is over its limit of {per_minute} requests a minute; "
                    f"retry in {wait:.1f}s",
                    retry_after=wait,
                )

        return admit

    def usage(self) -> UsageLedger:
        from router.state.usage import RedisUsage

        return RedisUsage(self)

    def attach(self, registry: Registry, prober: Prober, find: ReplicaFinder) -> None:
        from router.state.sync import StateSync

        self.sync = StateSync(self, find)
        registry.sync = self.sync
        prober.gate = self.sync.probe_gate
        self.spawn(self.sync.listen(self._resubscribe), "state:listen")

    def table_changed(self) -> None:
        """A new table may hold new breakers and trackers: read the stored states for them."""
        if self.sync is not None:
            self._resubscribe.set()


class RedisSessions:
    """Conversations in Redis: the same bounds as `router.sessions.SessionStore`, shared by every process.

    Layout: `<prefix>s:<id>` (a hash: owner, chars, turns), `<prefix>m:<id>` (a list of messages, each
    stored as `<chars>:<json>` so trimming needs no JSON in Lua) and `<prefix>sessions` (a sorted set of
    ids by last use, for the least-recently-used bound). Idle expiry is Redis's own key TTL. A message's
    size comes from `router.sessions.message_size` (the whole message's JSON), the one definition both
    stores use; the trimming and eviction rules (`messages_to_drop`, `make_room`) are repeated in the scripts.
    """

    def __init__(self, state: RedisState, store: SessionStore) -> None:
        self.state = state
        self.store = store  # holds the current limits (`configure` on every reload)
        self.index = f"{state.prefix}sessions"

    def _keys(self, session_id: str) -> list[str]:
        # Two prefixes rather than a suffix: ids may contain ':', and `x:m` must never name the list of `x`.
        prefix = self.state.prefix
        return [f"{prefix}s:{session_id}", f"{prefix}m:{session_id}", self.index]

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        check_session_id(session_id)
        ttl = int(self.store.settings.idle_ttl * 1000)
        found = await self.state.call(
            self.state.scripts["history"](
                keys=self._keys(session_id), args=[session_id, _owner(owner), ttl, self.state.prefix]
            ),
            "continuing this session",
        )
        if found[0] == -1:
            raise not_found(session_id)
        return [msgspec.json.decode(item.partition(b":")[2]) for item in found[1:]]

    async def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        settings = self.store.settings
        assistant = [{"role": "assistant", "content": answer}] if answer or not interrupted else []
        args: list[Any] = [
            session_id,
            _owner(owner),
            settings.max_sessions,
            settings.max_messages,
            settings.max_chars,
            int(settings.idle_ttl * 1000),
            int(interrupted),
            self.state.prefix,
            settings.max_sessions_per_key,
        ]
        for message in [*sent, *assistant]:
            args += [message_size(message), encode_message(message)]
        done = await self.state.call(
            self.state.scripts["record"](keys=self._keys(session_id), args=args), "saving this session turn"
        )
        if done[0] == -1:
            log.warning("session %s: turn not recorded, the session belongs to another caller", session_id)
            return
        self.store.evicted += int(done[1])
        self.store.trimmed_messages += int(done[2])

    async def delete(self, session_id: str, owner: str | None) -> bool:
        gone = await self.state.call(
            self.state.scripts["delete"](
                keys=self._keys(session_id), args=[session_id, _owner(owner), self.state.prefix]
            ),
            "deleting this session",
        )
        return bool(gone)


def _owner(owner: str | None) -> str:
    return "" if owner is None else "k:" + owner


def _short(digest: bytes) -> str:
    import hashlib

    return hashlib.sha256(digest).hexdigest()[:16]  # a key's identity in Redis, not its digest


def _client(settings: StateSettings) -> Redis:
    assert settings.url is not None
    options: dict[str, Any] = {}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=max(settings.timeout, 0.05),
        socket_connect_timeout=settings.connect_timeout,
        max_connections=settings.max_connections,
        retry=Retry(NoBackoff(), 0),  # the router decides what a failure means; never retry behind it
        retry_on_timeout=False,
        health_check_interval=0,
        client_name="router",
        **options,
    )
