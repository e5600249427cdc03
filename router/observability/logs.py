"""Structured logs: one line per request, one per state change, and the process's own messages.

structlog does the work with a short processor chain: a first processor puts `time`, `level` and `event`
at the head of the line, and the renderer turns it into one JSON object (msgspec's encoder, the fastest
at hand) or a human-readable line. The request line in the JSON format, written once per request, skips
the chain: it is a msgspec struct with the same fields in the same order, encoded straight to the sink.
The bound logger is built once per settings, with the level filter compiled in (methods below the level
are no-ops), and writes whole lines to a file descriptor with one `write` each: standard error, or the
file `logging.file` names, opened for appending.

The standard library's loggers (the reloader, the registry, uvicorn) can be routed through the same
logger (`install_stdlib`), so `router serve` writes one format to one place. Every message that may carry
text from outside (error messages, reasons, reload diffs, tracebacks) goes through the redactor first.
The text fields of a request line are bounded (`FIELD_LIMIT`, `ERROR_LIMIT`): whatever a client sent, a
request adds at most a few kilobytes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec
import structlog
from structlog.typing import BindableLogger, Processor

from router.config.models import LoggingSettings
from router.echo import shown
from router.observability.observer import Observer
from router.observability.record import RequestRecord

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_STDLIB_METHODS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_BAD_NEWS = frozenset({"unhealthy", "open"})
_running_loop = asyncio._get_running_loop  # None outside a running loop (no exception to catch)
_encode_json = msgspec.json.Encoder(enc_hook=str).encode
FIELD_LIMIT = 200
"""Characters of a name in a request line (route, model, upstream, key); longer ones are cut."""
ERROR_LIMIT = 2000
"""Characters of the error message in a request line."""


FLUSH_AFTER = 0.005
"""Seconds a request line may wait to be written with the lines that follow it (one `write` for all)."""
FLUSH_BYTES = 64 * 1024
"""Bytes of waiting lines that are written at once, whatever their age: what waits stays bounded."""


class Sink:
    """Whole lines to a file descriptor: standard error, or a file opened for appending.

    Request lines wait up to `FLUSH_AFTER` seconds (or until `FLUSH_BYTES` of them wait) and go out
    together in one `os.write`: under load, one system call for dozens of requests instead of one each,
    which profiles showed as a sizeable share of a whole answer's cost when it was one per loop turn (a
    loop turn serves one or two requests). Rarer lines (events, the standard library's, the last words
    before exit) are flushed at once by their writer, with whatever waits before them, and `close`
    writes what is left; so a line is late by at most a few milliseconds, never lost at a clean stop.
    Outside a running loop a line is written at once. Whole lines only, so lines from the request log and
    the standard library never interleave. A log that cannot be written is dropped: a full disk must not
    fail requests.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._pending: list[bytes] = []
        self._size = 0
        if path is None:
            self.fd = 2
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self.fd = os.open(path, flags, 0o640)

    def msg(self, line: bytes) -> None:
        loop = _running_loop()
        if loop is None:  # another thread, or before the loop runs: write it now, alone
            self._write(line + b"\n")
            return
        pending = self._pending
        if not pending:
            loop.call_later(FLUSH_AFTER, self.flush)  # otherwise a flush is already scheduled
        pending.append(line)
        self._size += len(line)
        if self._size > FLUSH_BYTES:
            self.flush()

    debug = info = warning = error = critical = msg

    def flush(self) -> None:
        """Write what is pending now (its lines joined once, each ending with a newline)."""
        pending = self._pending
        if not pending:
            return
        pending.append(b"")  # the last line's newline
        data = b"\n".join(pending)
        pending.clear()
        self._size = 0
        self._write(data)

    def _write(self, line: bytes) -> None:
        data = memoryview(line)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass

    def close(self) -> None:
        """Flush, then close a file (standard error stays open)."""
        self.flush()
        if self.path is not None and self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _clock() -> Callable[[], str]:
    """ISO 8601 UTC timestamps with milliseconds; the date and time part is formatted once a second."""
    last = [-1, ""]

    def now() -> str:
        t = time.time()
        second = int(t)
        if second != last[0]:
            last[0], last[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{last[1]}.{int((t - second) * 1000):03d}Z"

    return now


_now = _clock()


def _head(_: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """`time`, `level` and `event` first, in that order, then the fields."""
    return {"time": _now(), "level": method, "event": event_dict.pop("event"), **event_dict}


def _render_json(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> bytes:
    return _encode_json(event_dict)


def _text_renderer() -> Processor:
    console = structlog.dev.ConsoleRenderer(
        colors=False, timestamp_key="time", pad_event_to=20, sort_keys=False
    )

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> bytes:
        return str(console(logger, method, event_dict)).encode("utf-8", "replace")

    return render


def build_logger(settings: LoggingSettings, sink: Sink) -> BindableLogger:
    """A structlog logger for `settings` writing to `sink`; calls below the level cost nothing."""
    render = _render_json if settings.format == "json" else _text_renderer()
    wrapper: Any = structlog.make_filtering_bound_logger(LEVELS[settings.level])
    return wrapper(sink, [_head, render], {})  # type: ignore[no-any-return]


class _RequestLine(msgspec.Struct, omit_defaults=True):
    """A request line in the JSON format: the fields, in the order, that the structlog chain writes
    (`time`, `level`, `event` first); `error` only when there is one. Encoding a struct is much cheaper
    than building keyword arguments, a dict and a copy of it for every request."""

    time: str
    level: str
    event: str
    request_id: str
    route: str
    model: str
    upstream: str
    status: int
    outcome: str
    duration_ms: float
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_estimated: bool
    dialect: str
    retries: int
    stream: bool
    key: str | None
    trace_id: str | None
    overhead_ms: float | None
    resumes: int | None = None  # a resumed stream only (with `upstreams`: every one that served it)
    upstreams: list[str] | None = None
    error: str | None = None


_OPTIONAL_FIELDS = ("resumes", "upstreams", "error")
"""The request line's fields that are left out when None (`_RequestLine`'s defaults)."""


def _request_line(now: str, level: str, record: RequestRecord, redact: Callable[[str], str]) -> _RequestLine:
    """The JSON request line of `record`: the same values as the structlog path's fields."""
    started = record.started
    ended = record.ended_at
    duration = (ended or time.perf_counter()) - started
    first = record.first_token_at
    overhead = record.overhead
    principal = record.principal
    error = record.error
    upstreams = record.upstreams
    return _RequestLine(
        now,
        level,
        "request",
        record.request_id,
        shown(record.route, FIELD_LIMIT),
        shown(record.model, FIELD_LIMIT),
        shown(record.upstream, FIELD_LIMIT),
        record.status,
        record.outcome,
        round(duration * 1000.0, 2),
        None if first is None else round((first - started) * 1000.0, 2),
        record.prompt_tokens,
        record.completion_tokens,
        record.prompt_estimated or record.completion_estimated,
        record.dialect,
        record.retries,
        record.stream,
        principal if principal is None else shown(principal, FIELD_LIMIT),
        record.trace_id,
        None if overhead is None else round(overhead * 1000.0, 3),
        None if upstreams is None else record.resumes,
        None if upstreams is None else [shown(name, FIELD_LIMIT) for name in upstreams],
        None if error is None else shown(redact(error), ERROR_LIMIT),  # redacted whole, then cut
    )


class StructuredLog(Observer):
    """The request and event log, reconfigurable per table version (level, format, file)."""

    def __init__(self, settings: LoggingSettings, redact: Callable[[str], str]) -> None:
        self.redact = redact  # a `Redactor`; an empty one masks nothing
        self.settings: LoggingSettings | None = None
        self._sink: Sink | None = None
        self._stdlib: logging.Handler | None = None
        self.logger: Any = None
        self._requests = True
        self._warnings = True
        self._json_sink: Sink | None = None  # request lines go straight to it in the JSON format
        self.configure(settings)

    def configure(self, settings: LoggingSettings) -> None:
        """Apply new settings; the file is reopened only when it changed. Raises OSError if it cannot be."""
        if settings == self.settings:
            return
        old = self._sink
        sink = old if old is not None and old.path == settings.file else Sink(settings.file)
        self.logger = build_logger(settings, sink)
        self._requests = LEVELS[settings.level] <= logging.INFO
        self._warnings = LEVELS[settings.level] <= logging.WARNING
        self._json_sink = sink if settings.format == "json" else None
        self._sink, self.settings = sink, settings
        if old is not None and old is not sink:
            old.close()
        if self._stdlib is not None:
            self._stdlib.setLevel(LEVELS[settings.level])
            logging.getLogger().setLevel(LEVELS[settings.level])

    def close(self) -> None:
        """Close the log file (at shutdown)."""
        if self._sink is not None:
            self._sink.close()

    def install_stdlib(self) -> None:
        """Send every standard-library log record (root logger) through this log, in its format."""
        handler = _StdlibHandler(self)
        assert self.settings is not None
        level = LEVELS[self.settings.level]
        handler.setLevel(level)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level)
        self._stdlib = handler

    def request_finished(self, record: RequestRecord) -> None:
        status = record.status
        if status < 500:
            if not self._requests:
                return
            level = "info"
        elif self._warnings:
            level = "warning"
        else:
            return
        json_sink = self._json_sink
        if json_sink is not None:  # the usual case, without structlog: the same line, a third of the work
            json_sink.msg(_encode_json(_request_line(_now(), level, record, self.redact)))
            return
        # The other formats: the same fields through structlog (which adds `time`, `level`, `event`).
        fields = msgspec.structs.asdict(_request_line("", level, record, self.redact))
        del fields["time"], fields["level"], fields["event"]
        for optional in _OPTIONAL_FIELDS:
            if fields[optional] is None:
                del fields[optional]
        getattr(self.logger, level)("request", **fields)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        bad = fields.get("new") in _BAD_NEWS or fields.get("ok") is False
        method = self.logger.warning if bad else self.logger.info
        method(kind, **{key: _redacted(value, self.redact) for key, value in fields.items()})
        self._flush()

    def _flush(self) -> None:
        """Write out at once: only request lines wait (`FLUSH_AFTER`); rarer lines (events, the standard
        library's, the last words before exit) must not be lost to a process that stops."""
        if self._sink is not None:
            self._sink.flush()

    def stdlib_record(self, record: logging.LogRecord) -> None:
        """Write one standard-library record."""
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            fields["exception"] = self.redact("".join(traceback.format_exception(*record.exc_info)))
        method = getattr(self.logger, _STDLIB_METHODS.get(record.levelno, "info"))
        method(self.redact(record.getMessage()), **fields)
        self._flush()


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(item, redact) for item in value]
    return value


class _StdlibHandler(logging.Handler):
    def __init__(self, log: StructuredLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.stdlib_record(record)
        except Exception:
            self.handleError(record)
