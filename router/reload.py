"""Reloading the routing table: watch / SIGHUP / admin call -> read -> validate -> build -> swap.

Prometheus' order, and its promise: an invalid file never reaches the swap. The old table keeps serving,
the problems are reported in `router validate`'s `FILE:LINE:COL` form, and the failure is visible in
`/status` (last reload ok/failed, when, which hash). The reloader knows nothing about routes' internals:
it hands a validated config to its target's `apply` (a one-method seam, like a config receiver), which
builds the new version completely before swapping it in.

Nothing slow runs on the event loop: the file is read in a thread of its own, bounded in size and in time
(a FIFO or a stuck mount must not hang the reloader), and parsed and validated in a worker thread, so
traffic keeps flowing while a large table is checked.

Watching covers the ways files really change: in place, by an editor writing a new file and renaming it
over the old one, and by Kubernetes swapping the `..data` symlink of a ConfigMap volume. So the watcher
looks at the directory, not the file, and reloads whenever the file's content hash differs from the one
being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import watchfiles

from router.config import MAX_TABLE_BYTES, ConfigError, RouterConfig, load_config_bytes, read_table
from router.config.common import collector_paused
from router.config.diff import diff_configs

log = logging.getLogger("router.reload")

_DEBOUNCE_MS = 100  # editors write in bursts; a reload must still land well within a second
READ_TIMEOUT = 10.0
"""Seconds a read of the table may take before the reload is refused (a hung network mount)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload attempt did."""

    ok: bool
    changed: bool
    sha256: str
    problems: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """For the admin endpoint's answer."""
        return {
            "ok": self.ok,
            "changed": self.changed,
            "sha256": self.sha256,
            "problems": list(self.problems),
            "changes": list(self.changes),
        }


class ReloadTarget(Protocol):
    """What the reloader reloads into: the config served now, a way to apply one, a way to report."""

    def served_config(self) -> RouterConfig | None:
        """The config of the table being served (its hash decides whether a file is new)."""

    async def apply(self, config: RouterConfig) -> object:
        """Build `config` and swap it in; raising leaves the served table exactly as it was."""

    def reload_finished(self, trigger: str, path: Path, result: ReloadResult) -> None:
        """Record and publish how a reload attempt went."""


class Reloader:
    """Reloads `path` into `target`; one reload at a time, whatever triggered it."""

    def __init__(
        self,
        target: ReloadTarget,
        path: str | Path,
        max_bytes: int = MAX_TABLE_BYTES,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.target = target
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._reading: asyncio.Future[bytes] | None = None

    async def reload(self, trigger: str) -> ReloadResult:
        """Validate the file and, if it is valid and different, make it the served table."""
        async with self._lock:
            result = await self._reload(trigger)
            self.target.reload_finished(trigger, self.path, result)
            return result

    async def _reload(self, trigger: str) -> ReloadResult:
        served = self.target.served_config()
        try:
            raw = await self._read()
        except ConfigError as error:
            return _failed("", [str(p) for p in error.problems])
        except OSError as error:
            return _failed("", [f"{self.path}: cannot read: {error.strerror or error}"])
        sha = hashlib.sha256(raw).hexdigest()
        if served is not None and sha == served.sha256:
            return ReloadResult(ok=True, changed=False, sha256=sha)
        # One pause of the collector over validating, building and swapping in: it then looks at the new
        # table's objects once, instead of after each step (a third of a 10,000-route reload).
        with collector_paused():
            return await self._install(raw, sha, served)

    async def _install(self, raw: bytes, sha: str, served: RouterConfig | None) -> ReloadResult:
        try:
            config, changes = await asyncio.to_thread(self._check, raw, served)
        except ConfigError as error:
            return _failed(sha, [str(p) for p in error.problems])
        try:
            await self.target.apply(config)
        except Exception as error:  # a bug in building must not take the served table down with it
            log.exception("building the new table failed; still serving the old one")
            return _failed(sha, [f"{self.path}: the table could not be built: {error}"])
        return ReloadResult(ok=True, changed=True, sha256=sha, changes=tuple(changes))

    def _check(self, raw: bytes, served: RouterConfig | None) -> tuple[RouterConfig, list[str]]:
        """Parse and validate (in a worker thread), and say what would change."""
        config = load_config_bytes(raw, str(self.path))
        return config, diff_configs(served, config) if served is not None else []

    async def _read(self) -> bytes:
        """The file's bytes, read in a thread of its own and given up on after `read_timeout`.

        A read that never returns keeps its thread; until it does, later reloads are refused at once
        rather than piling up more stuck threads.
        """
        if self._reading is not None and not self._reading.done():
            raise OSError(errno.EBUSY, "an earlier read of this file has not returned yet (a hung mount?)")
        self._reading = _in_daemon_thread(read_table, self.path, self.max_bytes)
        self._reading.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen if late
        try:
            return await asyncio.wait_for(asyncio.shield(self._reading), self.read_timeout)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"reading took longer than {self.read_timeout:g}s") from None

    def start(self, watch: bool = True) -> None:
        """Listen for SIGHUP and, with `watch`, for changes of the file (call inside the event loop)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if watch:
            self._tasks.append(loop.create_task(self._watch(), name="reload:watch"))

    async def stop(self) -> None:
        """Stop watching."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _concerns_the_file(self, _change: watchfiles.Change, path: str) -> bool:
        """Changes to the file itself, or to a ConfigMap's `..data` link and `..<timestamp>` folders; the
        rest of the directory (logs, other tables, editor swap files) does not wake the reloader."""
        name = Path(path).name
        return name == self.path.name or name.startswith("..")

    def _on_sighup(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._reload_logged("SIGHUP")))

    async def _reload_logged(self, trigger: str) -> None:
        await self.reload(trigger)

    async def _watch(self) -> None:
        directory = self.path.resolve().parent if not self.path.is_symlink() else self.path.absolute().parent
        while True:
            try:
                async for _ in watchfiles.awatch(
                    directory,
                    watch_filter=self._concerns_the_file,
                    debounce=_DEBOUNCE_MS,
                    step=50,  # how often the watcher thread wakes: cheap enough idle, quick enough on save
                    recursive=False,
                    rust_timeout=60_000,
                    yield_on_timeout=False,
                ):
                    await self.reload("file change")
            except Exception:  # the directory may vanish for a moment (ConfigMap swap); try again
                log.exception("watching %s failed; retrying", directory)
                await asyncio.sleep(1)


def _failed(sha: str, problems: list[str]) -> ReloadResult:
    return ReloadResult(ok=False, changed=False, sha256=sha, problems=tuple(problems))


def _in_daemon_thread(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """Run `fn` in a daemon thread: one that never returns must not keep the process from exiting
    (the default executor's threads are joined at shutdown)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            value = fn(*args)
        except BaseException as error:
            failure = error
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(failure))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(value))

    threading.Thread(target=run, name="router-table-read", daemon=True).start()
    return future
