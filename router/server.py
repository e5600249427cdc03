"""Running the runtime under an ASGI server (uvicorn with uvloop and httptools, the fastest pair here)."""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from functools import partial
from typing import Any

import uvicorn

from router.config import RouterConfig, load_config
from router.runtime import Runtime
from router.security import unauthenticated_warning
from router.security.limits import MAX_HEADER_BYTES, BoundedHttpToolsProtocol, ClientLimits
from router.state import multi_process_refusal

log = logging.getLogger("router.server")

SPARE_DESCRIPTORS = 64
"""Descriptors kept for everything but clients and upstream pools: the listener, log files, the file
watcher, health probes opening a connection while a pool is full, the event loop's own."""


SOMAXCONN = "/proc/sys/net/core/somaxconn"


def raise_open_file_limit(needed: int) -> int:
    """Raise the soft open-file limit to the hard one (as Go's runtime does at start); the soft limit after.

    The soft limit is often 1,024 while the hard one is far higher: a process that holds thousands of
    streams (a client and an upstream socket each) needs the hard one, and only the hard one is an
    operator's decision (`LimitNOFILE=`, `ulimit -Hn`, `prlimit`; docs/threat-model.md). With no hard
    limit, the soft one goes as far as `needed`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(config: RouterConfig) -> int:
    """`server.max_connections`, lowered if the open-file limit leaves no room for the upstream side.

    Client sockets must never take the descriptors the router needs to reach its upstreams and probe
    them: once they are gone, probes fail and healthy upstreams are marked down. The soft limit is raised
    to the hard one first (`raise_open_file_limit`), since the default soft limit is often 1024.
    """
    wanted = config.server.max_connections
    reserve = sum(u.max_connections for u in config.upstreams.values()) + SPARE_DESCRIPTORS
    soft = raise_open_file_limit(wanted + reserve)
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(1, min(wanted, soft - reserve))
    if cap < wanted:
        log.warning(
            "server.max_connections lowered from %d to %d: the open-file limit is %d and the upstream pools "
            "and probes need %d; raise the hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn as root, "
            "prlimit) to accept more clients",
            wanted,
            cap,
            soft,
            reserve,
        )
    return cap


def listen_backlog(config: RouterConfig) -> int:
    """`server.listen_backlog`, as the kernel will apply it: at most `net.core.somaxconn`.

    Connections the kernel has completed but the router has not yet accepted wait in this queue; when it
    is full, new clients' handshakes are dropped and retried by their kernels after 1, 3, 7... seconds, so
    a burst of clients larger than the queue sees seconds of delay. Linux silently cuts a larger backlog
    to somaxconn; the warning says so, since the operator asked for more.
    """
    wanted = config.server.listen_backlog
    try:
        with open(SOMAXCONN) as f:
            somaxconn = int(f.read())
    except (OSError, ValueError):  # not Linux, or no /proc: the kernel applies its own cap
        return wanted
    if wanted > somaxconn:
        log.warning(
            "server.listen_backlog %d is cut to %d by the kernel (net.core.somaxconn); raise that sysctl "
            "to queue more connections",
            wanted,
            somaxconn,
        )
        return somaxconn
    return wanted


def client_limits(config: RouterConfig) -> ClientLimits:
    """The bounds of client connections, from `server:` (a restart applies changes, not a reload)."""
    server = config.server
    return ClientLimits(
        head_timeout=server.request_head_timeout,
        body_timeout=server.request_body_timeout,
        write_timeout=server.client_write_timeout,
        max_connections=connection_cap(config),
    )


def _options(log_level: str, own_logging: bool, config: RouterConfig) -> dict[str, Any]:
    """Settings shared by the single-process and the multi-worker server."""
    return {
        "loop": "uvloop",
        "http": partial(BoundedHttpToolsProtocol, limits=client_limits(config)),
        "timeout_keep_alive": config.server.keepalive_timeout,
        "backlog": listen_backlog(config),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "lifespan": "on",
        "access_log": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
        # The router reads neither the client's address nor the scheme; uvicorn's default would trust
        # X-Forwarded-For/-Proto from 127.0.0.1 and put a middleware layer on every request for it.
        "proxy_headers": False,
        **({"log_config": None} if own_logging else {}),
    }


def uvicorn_config(
    runtime: Runtime, host: str, port: int, log_level: str = "info", own_logging: bool = False
) -> uvicorn.Config:
    """The server settings: no access log (the router logs requests itself), graceful shutdown bounded.

    The request head is bounded (`MAX_HEADER_BYTES`, 431 beyond it) for both HTTP implementations, and
    client connections by the table's `server:` bounds (`router.security.limits`).
    `own_logging` leaves logging alone: the router's own log then carries uvicorn's messages too.
    """
    options = _options(log_level, own_logging, runtime.initial_config)
    return uvicorn.Config(app=runtime, host=host, port=port, **options)


def serve(
    config: RouterConfig,
    config_path: str | None,
    host: str | None = None,
    port: int | None = None,
    watch: bool = True,
    workers: int | None = None,
) -> None:
    """Serve `config` until interrupted, reloading it when `config_path` changes.

    With more than one worker (`server.workers` or `--workers`), uvicorn runs that many processes on one
    listening socket, each a whole router of its own (its own pools, probes and breakers) that watches
    and reloads the file by itself; SIGHUP to the parent restarts the workers one by one, gracefully.
    """
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    refusal = multi_process_refusal(config, workers)
    if refusal:  # `router serve` says so before it gets here; this guards callers of serve() itself
        raise SystemExit(refusal)
    warning = unauthenticated_warning(config, host)
    if workers > 1 and config_path is not None:
        os.environ[_CONFIG_ENV] = os.path.abspath(config_path)
        os.environ[_WATCH_ENV] = "1" if watch else "0"
        if warning:
            log.warning("%s", warning)
        options = _options(config.logging.level, own_logging=False, config=config)
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port, **options)
        return
    runtime = Runtime(config, config_path, watch=watch)
    runtime.logs.install_stdlib()  # one format, one destination: `logging:` in the table
    if warning:
        log.warning("%s", warning)
    server = uvicorn.Server(
        uvicorn_config(runtime, host, port, log_level=config.logging.level, own_logging=True)
    )
    server.run()


_CONFIG_ENV = "ROUTER_CONFIG"
_WATCH_ENV = "ROUTER_WATCH"


PARENT_CHECK_INTERVAL = 1.0
"""Seconds between a worker's checks that the process that started it is still there."""


def exit_with_parent(interval: float = PARENT_CHECK_INTERVAL) -> threading.Thread:
    """Stop this worker, gracefully (SIGTERM to itself), once the process that started it is gone.

    uvicorn's supervisor stops its workers when it is stopped, but not when it is killed (SIGKILL, the
    OOM killer): its workers were left serving on the shared port, on the table they had, with nobody
    to reload or restart them. A daemon thread compares `os.getppid()` with the parent it started with
    (the kernel reparents an orphan), once per `interval`.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the supervising process %d is gone: this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def worker_app() -> Runtime:
    """The app of one worker process (uvicorn's factory): the table named by the parent, loaded anew."""
    exit_with_parent()
    path = os.environ[_CONFIG_ENV]
    runtime = Runtime(load_config(path), path, watch=os.environ.get(_WATCH_ENV, "1") == "1")
    runtime.logs.install_stdlib()
    return runtime
