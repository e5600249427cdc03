"""Whether the router traces, decided once per table version, and the switch the request path reads.

Tracing is off unless an OTLP endpoint is known, from the table's `telemetry:` block or from the standard
`OTEL_*` variables (the table wins key by key; `OTEL_SDK_DISABLED=true` turns it off whatever the table
says). The decision is made when a table version is committed, never per request: with tracing off,
`Telemetry.tracer` is None, the OpenTelemetry SDK is not even imported, and a request pays one attribute
read. With tracing on, `router.observability.tracing` builds its own tracer provider (never the global
one, so several routers in one process, as in tests, do not share spans), and a changed block replaces it:
the old provider is flushed and shut down in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.config.models import TelemetrySettings

if TYPE_CHECKING:
    from router.observability.tracing import RequestTracer

log = logging.getLogger("router.telemetry")

DEFAULT_SERVICE_NAME = "router"
TRACES_PATH = "/v1/traces"
_TRUE = frozenset({"true", "1", "yes", "on"})
# OTEL_TRACES_SAMPLER values and whether each follows the parent's decision; the ratio comes from the
# name (always_on: 1, always_off: 0) or from OTEL_TRACES_SAMPLER_ARG.
_SAMPLERS: dict[str, tuple[bool, float | None]] = {
    "always_on": (False, 1.0),
    "always_off": (False, 0.0),
    "traceidratio": (False, None),
    "parentbased_always_on": (True, 1.0),
    "parentbased_always_off": (True, 0.0),
    "parentbased_traceidratio": (True, None),
}


@dataclass(frozen=True, slots=True)
class TraceExport:
    """Tracing settings with the environment's defaults filled in: what the tracer is built from."""

    endpoint: str  # the full traces URL (…/v1/traces)
    service_name: str
    sample_ratio: float
    parent_based: bool  # a client's traceparent decides for its own trace (its sampled flag)
    headers: tuple[tuple[str, str], ...] | None  # None: the exporter reads OTEL_EXPORTER_OTLP_HEADERS
    timeout: float
    max_queue_size: int


def resolve(settings: TelemetrySettings, environ: Mapping[str, str]) -> TraceExport | None:
    """The export the table and the environment ask for, or None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE or settings.enabled is False:
        return None
    if settings.otlp_endpoint:
        endpoint = settings.otlp_endpoint.rstrip("/") + TRACES_PATH
    elif environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # a signal URL, used as it is
    elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + TRACES_PATH
    elif settings.enabled:
        endpoint = "http://localhost:4318" + TRACES_PATH  # the specification's default
    else:
        return None
    # The table's ratio replaces the environment's; whether a client's sampled flag is followed stays the
    # environment's choice (OTEL_TRACES_SAMPLER=traceidratio ignores it; the default follows it).
    parent_based, ratio = _sampler(environ)
    if settings.sample_ratio is not None:
        ratio = settings.sample_ratio
    service = settings.service_name or environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    headers = tuple(sorted(settings.headers.items())) if settings.headers else None
    return TraceExport(
        endpoint=endpoint,
        service_name=service,
        sample_ratio=ratio,
        parent_based=parent_based,
        headers=headers,
        timeout=settings.timeout,
        max_queue_size=settings.max_queue_size,
    )


def _sampler(environ: Mapping[str, str]) -> tuple[bool, float]:
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    known = _SAMPLERS.get(name)
    if known is None:
        log.warning("OTEL_TRACES_SAMPLER=%s is not a sampler the router knows; sampling every trace", name)
        return True, 1.0
    parent_based, ratio = known
    if ratio is None:
        arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = min(max(float(arg), 0.0), 1.0)
        except ValueError:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%s is not a number; sampling every trace", arg)
            ratio = 1.0
    return parent_based, ratio


class Telemetry:
    """The process's tracing switch: `tracer` is the current table's tracer, or None when off."""

    def __init__(self, redact: Callable[[str], str], environ: Mapping[str, str] | None = None) -> None:
        self.redact = redact
        self.environ = os.environ if environ is None else environ
        self.tracer: RequestTracer | None = None
        self.export: TraceExport | None = None

    def prepare(self, settings: TelemetrySettings) -> None:
        """Import the SDK now if `settings` turn tracing on (called off the loop, while a table is built),
        so that the commit on the event loop does not pay for a first import."""
        if resolve(settings, self.environ) is not None:
            import router.observability.tracing  # noqa: F401

    def configure(self, settings: TelemetrySettings) -> None:
        """Apply a table's `telemetry:` block (at commit); an unchanged export keeps its tracer."""
        export = resolve(settings, self.environ)
        if export == self.export:
            return
        old = self.tracer
        if export is None:
            self.tracer = None
        else:
            from router.observability.tracing import RequestTracer

            self.tracer = RequestTracer(**dataclasses.asdict(export), redact=self.redact)
            log.info(
                "tracing to %s (service %s, sample ratio %g)",
                export.endpoint,
                export.service_name,
                export.sample_ratio,
            )
        self.export = export
        if old is not None:  # its last spans are flushed within the export timeout, off the loop
            threading.Thread(target=old.shutdown, name="router-tracer-shutdown", daemon=True).start()

    async def close(self) -> None:
        """Flush and stop the exporter (at shutdown), within its export timeout."""
        tracer, self.tracer, self.export = self.tracer, None, None
        if tracer is not None:
            await asyncio.to_thread(tracer.shutdown)
