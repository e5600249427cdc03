"""Reloading the routing table: watch / SIGHUP / admin call -> validate -> build -> atomic swap.

Prometheus' order, and its promise: an invalid file never reaches the swap. The old table keeps serving,
the problems are logged in `router validate`'s `FILE:LINE:COL` form, and the failure is visible in
`/status` (last reload ok/failed, when, which hash). The reloader knows nothing about routes' internals:
it hands a validated config to `Runtime.apply`.

Watching covers the ways files really change: in place, by an editor writing a new file and renaming it
over the old one, and by Kubernetes swapping the `..data` symlink of a ConfigMap volume. So the watcher
looks at the directory, not the file, and reloads whenever the file's content hash differs from the one
being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from router.config import ConfigError, load_config
from router.config.diff import diff_configs

if TYPE_CHECKING:
    from router.runtime import Runtime

log = logging.getLogger("router.reload")

_DEBOUNCE_MS = 100  # editors write in bursts; a reload must still land well within a second


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


class Reloader:
    """Reloads `path` into `runtime`; one reload at a time, whatever triggered it."""

    def __init__(self, runtime: Runtime, path: str | Path) -> None:
        self.runtime = runtime
        self.path = Path(path)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def reload(self, trigger: str) -> ReloadResult:
        """Validate the file and, if it is valid and different, make it the served table."""
        async with self._lock:
            return self._reload(trigger)

    def _reload(self, trigger: str) -> ReloadResult:
        current = self.runtime.current
        served_sha = current.table.config.sha256 if current else ""
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            return self._failed(trigger, "", [f"{self.path}: cannot read: {error.strerror or error}"])
        sha = hashlib.sha256(raw).hexdigest()
        if sha == served_sha:
            self.runtime.record_reload(ok=True, sha256=sha, error=None)
            return ReloadResult(ok=True, changed=False, sha256=sha)
        try:
            config = load_config(self.path)
        except ConfigError as error:
            return self._failed(trigger, sha, [str(p) for p in error.problems])
        except OSError as error:
            return self._failed(trigger, sha, [f"{self.path}: cannot read: {error.strerror or error}"])
        changes = diff_configs(current.table.config, config) if current else []
        try:
            self.runtime.apply(config)
        except Exception as error:  # a bug in building must not take the served table down with it
            log.exception("building the new table failed; still serving the old one")
            return self._failed(trigger, sha, [f"{self.path}: the table could not be built: {error}"])
        self.runtime.record_reload(ok=True, sha256=sha, error=None)
        self.runtime.events.publish("reload", ok=True, trigger=trigger, sha256=sha, changes=changes)
        log.info(
            "reloaded %s on %s (sha256 %s): %s",
            self.path,
            trigger,
            sha[:12],
            "; ".join(changes) or "no change",
        )
        return ReloadResult(ok=True, changed=True, sha256=sha, changes=tuple(changes))

    def _failed(self, trigger: str, sha: str, problems: list[str]) -> ReloadResult:
        for problem in problems:
            log.error("%s", problem)
        log.error(
            "reload on %s rejected: %s is invalid; still serving the previous table", trigger, self.path
        )
        self.runtime.record_reload(ok=False, sha256=sha, error="\n".join(problems))
        self.runtime.events.publish("reload", ok=False, trigger=trigger, sha256=sha, problems=problems)
        return ReloadResult(ok=False, changed=False, sha256=sha, problems=tuple(problems))

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
