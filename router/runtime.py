"""The running router: the current table and app, the state that outlives them, and the swap between them.

This is the ASGI application the server runs. It owns the lifespan (pools open at start-up, close at
shutdown) and forwards each request to the app of the current table. `apply` builds a new table and app
from a validated config and swaps one reference: a request that already entered the old app finishes
there, with the routes it started with.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from litestar import Litestar

from router.api.admin import admin_handlers
from router.api.chat import ChatServices
from router.api.fastpath import ChatFastPath
from router.api.metrics import metrics_handlers
from router.api.middleware import RequestIdMiddleware
from router.api.sessions import session_handlers
from router.api.status import status_handlers
from router.app import chat_resolvers, create_app
from router.config import RouterConfig
from router.observability import ObservedEventBus, Observer, Observers, RouterMetrics, StructuredLog
from router.probing import Prober
from router.registry import Registry
from router.reload import Reloader
from router.security import Access, Redactor, build_access, config_secrets
from router.sessions import SessionStore
from router.state import build_state, register_state_metrics, state_secrets
from router.state.sync import replica_finder
from router.table import RouteTable, build_table

log = logging.getLogger("router.runtime")


@dataclass(frozen=True, slots=True)
class Loaded:
    """One table version as served: the table, its app, and when it went live."""

    table: RouteTable
    app: Litestar
    loaded_at: float
    fast: ChatFastPath | None = None  # chat requests without the framework; None when CORS is on


class Runtime:
    """Process-wide state and the ASGI entry point."""

    def __init__(self, config: RouterConfig, config_path: str | None = None, watch: bool = True) -> None:
        self.initial_config = config
        self.config_path = config_path
        self.watch = watch
        self.reloader: Reloader | None = None
        # Secrets of every table served, masked wherever outside text is written (logs, events, errors).
        self.redactor = Redactor()
        self.metrics = RouterMetrics(lambda: self.current.table if self.current else None)
        self.logs = StructuredLog(config.logging, self.redactor)
        self.observer: Observer = Observers([self.metrics, self.logs])
        self.events = ObservedEventBus(self.observer, self.redactor.value)
        self.access: Access | None = None
        self.registry = Registry(self.events)
        self.prober = Prober()
        # One store for the process: conversations outlive reloads, each config only sets the limits.
        self.sessions = SessionStore(config.sessions)
        # Sessions, rate limits, breaker and health shared with other processes (or not): `state:`.
        self.state = build_state(config.state)
        self.shared_sessions = self.state.sessions(self.sessions)
        register_state_metrics(self.metrics.registry, self.state)
        self.current: Loaded | None = None
        self.started_at = time.time()
        self.entry = RequestIdMiddleware(self._dispatch)
        self.last_reload: dict[str, Any] = {
            "last_reload_ok": True,
            "last_reload_at": self.started_at,
            "last_reload_error": None,
        }

    def record_reload(self, ok: bool, sha256: str, error: str | None) -> None:
        """Remember how the last reload went, for /status and metrics."""
        self.last_reload = {
            "last_reload_ok": ok,
            "last_reload_at": time.time(),
            "last_reload_error": error,
            "last_reload_sha256": sha256,
        }
        self.observer.reloaded(ok, sha256, "")

    def reload_status(self) -> dict[str, Any]:
        """How the last reload went (Prometheus' config_last_reload_successful, as data)."""
        return dict(self.last_reload)

    def apply(self, config: RouterConfig) -> Loaded:
        """Build the table and app for `config` and make them current (call inside the event loop)."""
        self.logs.configure(config.logging)  # first: a log file that cannot be opened refuses the table
        self.redactor.add(config_secrets(config))
        self.redactor.add(state_secrets(config))
        if config.state != self.initial_config.state:
            log.warning("state: a changed `state:` block takes effect at the next restart, not on reload")
        table = build_table(config, self.registry)
        self.sessions.configure(config.sessions)
        access = build_access(config, self.access)
        services = ChatServices(
            registry=self.registry,
            observer=self.observer,
            access=access,
            sessions=self.shared_sessions if self.sessions.enabled else None,
            redact=self.redactor,
            admit=self.state.admission(access),
        )
        extra = [
            *status_handlers(self, access),
            *admin_handlers(self, access),
            *metrics_handlers(self.metrics, access),
            *session_handlers(self.shared_sessions, access),
        ]
        resolvers = chat_resolvers(table)
        app = create_app(
            table, services, extra, redact=self.redactor, resolvers=resolvers, state_status=self.state.status
        )
        fast = None
        if not config.server.cors_allowed_origins:  # CORS headers are the app's job: let it see every request
            fast = ChatFastPath(resolvers, services, config.server.max_body_bytes, self.redactor)
        loaded = Loaded(table=table, app=app, loaded_at=time.time(), fast=fast)
        self.current, self.access = loaded, access
        self.metrics.prepare(table)
        self.prober.sync(self.registry.health_checks())
        self.state.table_changed()
        log.info(
            "serving %d routes from %s (sha256 %s)", len(table.routes), config.source, config.sha256[:12]
        )
        return loaded

    async def startup(self) -> None:
        """Open pools, start probing for the initial table, and watch the file for changes."""
        await self.state.start()
        self.state.attach(self.registry, self.prober, replica_finder(lambda: self.current))
        self.apply(self.initial_config)
        if self.config_path is not None:
            self.reloader = Reloader(self, self.config_path)
            self.reloader.start(watch=self.watch)
        # Everything built so far lives as long as the process: keep it out of the collector's scans, so
        # collections stay short and do not show up as latency spikes.
        gc.collect()
        gc.freeze()

    async def shutdown(self) -> None:
        """Stop watching and probing, and close every pool."""
        if self.reloader is not None:
            await self.reloader.stop()
        await self.prober.stop()
        await self.registry.close()
        await self.state.close()
        self.logs.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.entry(scope, receive, send)

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        loaded = self.current
        assert loaded is not None, "the runtime serves requests only after startup"
        fast = loaded.fast
        if fast is not None and scope["type"] == "http":
            resolve = fast.match(scope)
            if resolve is not None:
                await fast.serve(scope, receive, send, resolve)
                return
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
