"""Running the runtime under an ASGI server (uvicorn with uvloop and httptools, the fastest pair here)."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from router.config import RouterConfig
from router.runtime import Runtime
from router.security import unauthenticated_warning
from router.security.limits import MAX_HEADER_BYTES, BoundedHttpToolsProtocol

log = logging.getLogger("router.server")


def uvicorn_config(
    runtime: Runtime, host: str, port: int, log_level: str = "info", own_logging: bool = False
) -> uvicorn.Config:
    """The server settings: no access log (the router logs requests itself), graceful shutdown bounded.

    The request head is bounded (`MAX_HEADER_BYTES`, 431 beyond it) for both HTTP implementations.
    `own_logging` leaves logging alone: the router's own log then carries uvicorn's messages too.
    """
    extra: dict[str, Any] = {"log_config": None} if own_logging else {}
    return uvicorn.Config(
        app=runtime,
        host=host,
        port=port,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        **extra,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def serve(
    config: RouterConfig,
    config_path: str | None,
    host: str | None = None,
    port: int | None = None,
    watch: bool = True,
) -> None:
    """Serve `config` until interrupted, reloading it when `config_path` changes."""
    runtime = Runtime(config, config_path, watch=watch)
    runtime.logs.install_stdlib()  # one format, one destination: `logging:` in the table
    host = host or config.server.host
    warning = unauthenticated_warning(config, host)
    if warning:
        log.warning("%s", warning)
    level = config.logging.level
    server = uvicorn.Server(
        uvicorn_config(runtime, host, port or config.server.port, log_level=level, own_logging=True)
    )
    server.run()
