"""Running the runtime under an ASGI server (uvicorn with uvloop and httptools, the fastest pair here)."""

from __future__ import annotations

import logging

import uvicorn

from router.config import RouterConfig
from router.runtime import Runtime


def uvicorn_config(runtime: Runtime, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The server settings: no access log (the router logs requests itself), graceful shutdown bounded."""
    return uvicorn.Config(
        app=runtime,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime(config, config_path, watch=watch)
    server = uvicorn.Server(uvicorn_config(runtime, host or config.server.host, port or config.server.port))
    server.run()
