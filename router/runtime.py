"""The running router: the current table and app, the state that outlives them, and the swap between them.

This is the ASGI application the server runs. It owns the lifespan (pools open at start-up, close at
shutdown) and forwards each request to the app of the current table.

`apply` installs a new table version in Caddy's order. Provision: build everything the version needs (the
route table against a registry plan, the access policy, the app, the fast path) without touching what
serves, in a worker thread, then open the new pools on the loop. Swap: one reference. Commit: the
registry's planned changes, retirement of unused pools, secrets, logging, sessions, metrics, probes and
tracing (a changed `telemetry:` block replaces the tracer here, never before the swap).
Anything that fails before the swap leaves the running router exactly as it was; a request that already
entered the old app finishes there, with the routes it started with.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Litestar

from router.api.admin import admin_handlers
from router.api.chat import ChatServices
from router.api.fastpath import ChatFastPath
from router.api.metrics import metrics_handlers
from router.api.middleware import RequestIdMiddleware
from router.api.ops import ops_handlers
from router.api.sessions import session_handlers
from router.api.status import status_handlers
from router.api.usage import usage_handlers
from router.app import create_app, front_doors
from router.config import RouterConfig
from router.config.common import collector_paused
from router.config.models import LoggingSettings
from router.observability import ObservedEventBus, Observer, Observers, RouterMetrics, StructuredLog
from router.observability.series import OpsSeries
from router.observability.telemetry import Telemetry
from router.probing import Prober
from router.registry import Registry, RegistryPlan
from router.reload import Reloader, ReloadResult
from router.security import Access, Redactor, build_access, config_secrets
from router.security.cors import FastCors
from router.security.http import cors_config
from router.sessions import SessionStore
from router.state import build_state, register_state_metrics, state_secrets
from router.state.sync import replica_finder
from router.state.usage import quotas_of
from router.table import RouteTable, build_table

log = logging.getLogger("router.runtime")


@dataclass(frozen=True, slots=True)
class Loaded:
    """One table version as served: the table, its app, and when it went live."""

    table: RouteTable
    app: Litestar
    loaded_at: float
    fast: ChatFastPath | None = None  # chat requests without the framework (CORS included)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One table version provisioned but not served yet: what the swap installs and the commit applies."""

    config: RouterConfig
    table: RouteTable
    app: Litestar
    fast: ChatFastPath | None
    access: Access
    plan: RegistryPlan


YOUNG_COLLECTION_THRESHOLD = 20_000
"""Allocations (net of frees) between two collections of the youngest generation; Python's default is 700.

A request allocates a few hundred objects that all die with it (reference counting frees them, not the
collector), so at the default a young collection ran about every other request and scanned what was in
flight: 6% of the router's CPU per request at 50 clients (122 -> 114 us measured, tests/perf/results/
findings.md). Cycles still get collected, later; the young generation then holds at most some 20,000
objects (a couple of MB) between collections, and the soak checks that memory still plateaus.
"""


class Runtime:
    """Process-wide state and the ASGI entry point."""

    def __init__(self, config: RouterConfig, config_path: str | None = None, watch: bool = True) -> None:
        self.initial_config = config
        self.watch = watch
        self.reloader = Reloader(self, config_path) if config_path is not None else None
        # Secrets of every table served, masked wherever outside text is written (logs, events, errors).
        self.redactor = Redactor()
        self.metrics = RouterMetrics(lambda: self.current.table if self.current else None)
        self.logs = StructuredLog(config.logging, self.redactor)
        # The operations page's numbers: the metrics sampled once a second, and the recent reloads.
        self.ops = OpsSeries(self.metrics.registry, self._route_paths)
        self.observer: Observer = Observers([self.metrics, self.logs, self.ops])
        self.events = ObservedEventBus(self.observer, self.redactor.value)
        self.telemetry = Telemetry(self.redactor.value)  # tracing, configured at each commit
        self.access: Access | None = None
        self.registry = Registry(self.events)
        self.prober = Prober()
        # One store for the process: conversations outlive reloads, each config only sets the limits.
        self.sessions = SessionStore(config.sessions)
        # Sessions, rate limits, breaker and health shared with other processes (or not): `state:`.
        self.state = build_state(config.state)
        self.shared_sessions = self.state.sessions(self.sessions)
        register_state_metrics(self.metrics.registry, self.state)
        # Tokens and requests per key, route and day; daily quotas (router.state.usage), kept across reloads.
        self.usage = self.state.usage()
        self.metrics.registry.register(self.usage.collector())
        # every observer above, and the ledger (the event bus, bound above, has no need of it)
        self.observer = Observers([self.observer, self.usage])
        self.current: Loaded | None = None
        self.started_at = time.time()
        self.entry = RequestIdMiddleware(self._app)  # what the fast path declines (it sets its own ids)
        self.last_reload: dict[str, Any] = {
            "last_reload_ok": True,
            "last_reload_at": self.started_at,
            "last_reload_error": None,
        }

    # What the reloader and the status handlers see of the runtime (their narrow interfaces).

    def served_config(self) -> RouterConfig | None:
        """The config of the table being served."""
        return self.current.table.config if self.current else None

    def served(self) -> tuple[RouteTable, float]:
        """The served table and when it went live."""
        loaded = self.current
        assert loaded is not None, "status is served only after startup"
        return loaded.table, loaded.loaded_at

    def reload_status(self) -> dict[str, Any]:
        """How the last reload went (Prometheus' config_last_reload_successful, as data)."""
        return dict(self.last_reload)

    def session_counts(self) -> dict[str, Any]:
        """Sessions in use and their bounds."""
        return self.sessions.counts()

    def probe_loops(self) -> list[dict[str, Any]]:
        """The probe loops running now."""
        return self.prober.loops()

    def state_status(self) -> dict[str, Any]:
        """Whether the shared state backend is reachable, and what it shares."""
        return self.state.status()

    def _route_paths(self) -> list[str]:
        """The served routes' paths (what the operations page samples)."""
        return [route.path for route in self.current.table.routes] if self.current else []

    def reload_finished(self, trigger: str, path: Path, result: ReloadResult) -> None:
        """Remember how a reload went (for /status and metrics) and publish it when it did something."""
        self.last_reload = {
            "last_reload_ok": result.ok,
            "last_reload_at": time.time(),
            "last_reload_error": "\n".join(result.problems) if not result.ok else None,
            "last_reload_sha256": result.sha256,
        }
        self.observer.reloaded(result.ok, result.sha256, trigger)
        if not result.ok:
            message = f"reload on {trigger} rejected: {path} is invalid; still serving the previous table"
            self.events.publish(
                "reload",
                message=message,
                ok=False,
                trigger=trigger,
                sha256=result.sha256,
                problems=list(result.problems),
            )
        elif result.changed:
            changes = list(result.changes)
            message = f"reloaded {path} on {trigger} (sha256 {result.sha256[:12]}): " + (
                "; ".join(changes) or "no change"
            )
            self.events.publish(
                "reload", message=message, ok=True, trigger=trigger, sha256=result.sha256, changes=changes
            )

    # Installing a table version: provision, swap, commit.

    async def apply(self, config: RouterConfig) -> Loaded:
        """Make `config` the served table; raising before the swap leaves everything as it was."""
        return self._install(await asyncio.to_thread(self.prepare, config))

    def prepare(self, config: RouterConfig) -> Prepared:
        """Build everything `config` needs without changing anything that serves (safe in a thread)."""
        with collector_paused():  # a table's objects come in one burst and stay: nothing to collect
            return self._prepare(config)

    def _prepare(self, config: RouterConfig) -> Prepared:
        _check_log_file(config.logging, self.logs.settings)  # a log file that cannot be opened refuses it
        if config.state != self.initial_config.state:
            log.warning("state: a changed `state:` block takes effect at the next restart, not on reload")
        self.telemetry.prepare(config.telemetry)
        plan = self.registry.plan()
        table = build_table(config, plan)
        access = build_access(config, self.access)
        services = ChatServices(
            registry=self.registry,
            observer=self.observer,
            access=access,
            sessions=self.shared_sessions if config.sessions.enabled else None,
            redact=self.redactor,
            admit=self.state.admission(access),
            telemetry=self.telemetry,
            quota=self.usage.quota(quotas_of(config.auth)),
        )
        reload = self.reloader.reload if self.reloader is not None else None
        extra = [
            *status_handlers(self, access),
            *admin_handlers(reload, self.redactor.value, access),
            *metrics_handlers(self.metrics, access),
            *session_handlers(self.shared_sessions, access),
            *ops_handlers(self.ops, access),
            *usage_handlers(self.usage, access),
        ]
        doors = front_doors(table)
        app = create_app(
            table, services, extra, redact=self.redactor, doors=doors, state_status=self.state.status
        )
        # CORS on the fast path: the same answers as the app's middleware, built once (router.security.cors)
        cors = FastCors.of(cors_config(config.server.cors_allowed_origins))
        fast = ChatFastPath(doors, services, config.server.max_body_bytes, self.redactor, cors)
        return Prepared(config=config, table=table, app=app, fast=fast, access=access, plan=plan)

    def _install(self, prepared: Prepared) -> Loaded:
        """Open the new pools, swap, commit: one synchronous step on the loop, so no request sees half."""
        try:
            prepared.plan.open()
        except BaseException:
            asyncio.get_running_loop().create_task(prepared.plan.discard())
            raise
        loaded = Loaded(table=prepared.table, app=prepared.app, loaded_at=time.time(), fast=prepared.fast)
        self.current, self.access = loaded, prepared.access
        self._commit(prepared)
        return loaded

    def _commit(self, prepared: Prepared) -> None:
        """Everything that follows the swap. The new table is served already: a step that fails is logged
        and the others still run, since going back would be worse than a missing log setting."""
        config = prepared.config
        steps = (
            ("registry", lambda: self.registry.commit(prepared.plan)),
            ("secrets", lambda: self.redactor.add(config_secrets(config) | state_secrets(config))),
            ("logging", lambda: self.logs.configure(config.logging)),
            ("sessions", lambda: self.sessions.configure(config.sessions)),
            ("probes", lambda: self.prober.sync(self.registry.health_checks())),
            ("shared state", self.state.table_changed),
            ("telemetry", lambda: self.telemetry.configure(config.telemetry)),
            ("quotas", lambda: setattr(self.usage, "quotas", quotas_of(config.auth))),
        )
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("applying the new table's %s failed after it went live", name)

    async def startup(self) -> None:
        """Open pools, start probing for the initial table, and watch the file for changes."""
        await self.state.start()
        await self.usage.start()
        self.state.attach(self.registry, self.prober, replica_finder(lambda: self.current))
        table = self._install(self.prepare(self.initial_config)).table
        config = table.config
        log.info(
            "serving %d routes from %s (sha256 %s)", len(table.routes), config.source, config.sha256[:12]
        )
        if self.reloader is not None:
            self.reloader.start(watch=self.watch)
        # Everything built so far lives as long as the process: keep it out of the collector's scans, so
        # collections stay short and do not show up as latency spikes.
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])

    async def shutdown(self) -> None:
        """Stop watching and probing, and close every pool."""
        if self.reloader is not None:
            await self.reloader.stop()
        await self.ops.stop()
        await self.prober.stop()
        await self.registry.close()
        await self.usage.close()
        await self.state.close()
        await self.telemetry.close()
        self.logs.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            loaded = self.current
            assert loaded is not None, "the runtime serves requests only after startup"
            fast = loaded.fast
            if fast is not None:
                door = fast.match(scope)
                if door is not None:
                    await fast.serve(scope, receive, send, door)
                    return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.entry(scope, receive, send)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        loaded = self.current
        assert loaded is not None, "the runtime serves requests only after startup"
        await loaded.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _check_log_file(settings: LoggingSettings, current: LoggingSettings | None) -> None:
    """Refuse a table whose new log file cannot be opened for appending (raises OSError), before the swap."""
    if settings.file is None or (current is not None and current.file == settings.file):
        return
    with open(settings.file, "ab"):
        pass
