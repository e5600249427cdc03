"""OpenTelemetry spans for chat requests, built on the official SDK and exported over OTLP/HTTP.

Imported only when tracing is on (`router.observability.telemetry` decides). One request makes:

- a server span `chat <model>` from arrival to the end of the answer, the child of the client's W3C
  `traceparent` when it sent one, with the GenAI semantic conventions (`gen_ai.operation.name`,
  `gen_ai.provider.name` and the older `gen_ai.system`, `gen_ai.request.model`, `gen_ai.request.max_tokens`,
  `gen_ai.response.model`, `gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` and
  `.output_tokens`), the HTTP ones, the router's own (`router.route`, `router.upstream`, `router.key`,
  `router.retries`, `router.dialect`), and a `first_token` event for streams;
- a `queue wait` child span per attempt on an upstream with `max_concurrency` (the wait for a slot);
- a client span per upstream attempt, so retries and fallbacks show as siblings (`router.attempt`,
  `router.fallback`), with an error status when the attempt failed; the upstream request carries a
  `traceparent` naming that span, written by the W3C trace-context propagator.

Only `traceparent`/`tracestate` are read from clients and written upstream: the W3C baggage a client may
send is not forwarded to model servers. Span times are converted from the request record's
`perf_counter` clock through one anchor per request, so spans agree with the metrics to the microsecond.

Bounds: finished spans wait in the batch processor's queue (`telemetry.max_queue_size`, beyond which new
spans are dropped) and one export, retries included, lasts at most `telemetry.timeout`; the exporter runs
in its own thread, so a slow or absent collector never delays a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_trace_id, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router.observability.record import RequestRecord
from router.policies import clamp_max_tokens
from router.upstreams.errors import UpstreamError

if TYPE_CHECKING:
    from router.protocol.openai_chat import ChatRequest
    from router.table import Route, RouteReplica
    from router.upstreams.base import AnswerStats, ChatCall

MESSAGE_LIMIT = 500
"""Characters of an error message kept in a span's status (redacted first, then cut)."""
_BATCH = 512

AsgiHeaders = Iterable[tuple[bytes, bytes]]


class _AsgiGetter(Getter[AsgiHeaders]):
    """Reads W3C trace-context headers straight from an ASGI scope's header list."""

    def get(self, carrier: AsgiHeaders, key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: AsgiHeaders) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _AsgiGetter()


class RequestTracer:
    """One tracer provider, its exporter and its batch processor; starts a `RequestTrace` per request."""

    def __init__(
        self,
        *,
        endpoint: str,
        service_name: str,
        sample_ratio: float,
        parent_based: bool,
        headers: tuple[tuple[str, str], ...] | None,
        timeout: float,
        max_queue_size: int,
        redact: Callable[[str], str],
    ) -> None:
        """Build from a resolved export (`router.observability.telemetry.TraceExport`'s fields)."""
        self.redact = redact
        sampler: Sampler = TraceIdRatioBased(sample_ratio)
        if parent_based:
            sampler = ParentBased(sampler)
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}), sampler=sampler
        )
        exporter = OTLPSpanExporter(
            endpoint=endpoint, headers=dict(headers) if headers is not None else None, timeout=timeout
        )
        self.processor = BatchSpanProcessor(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(_BATCH, max_queue_size),
            export_timeout_millis=timeout * 1000.0,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("router")
        self.propagator = TraceContextTextMapPropagator()
        self._servers: dict[str, tuple[str, int]] = {}

    def start(self, headers: AsgiHeaders, record: RequestRecord, path: str) -> RequestTrace:
        """The server span of a request that just arrived, the child of the client's traceparent if any."""
        parent = self.propagator.extract(headers, getter=_GETTER)
        span = self.tracer.start_span(
            "chat",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": "chat",
                "http.request.method": "POST",
                "url.path": path,
                "router.request_id": record.request_id,
            },
        )
        trace = RequestTrace(self, span, record.started)
        record.trace_id = format_trace_id(span.get_span_context().trace_id)
        return trace

    def server_of(self, base_url: str) -> tuple[str, int]:
        """`server.address` and `server.port` of an upstream (parsed once per base URL)."""
        found = self._servers.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            found = self._servers[base_url] = (parts.hostname or "", port)
        return found

    def flush(self, timeout: float = 5.0) -> bool:
        """Export every finished span now (tests, shutdown)."""
        return self.processor.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Flush what is queued (bounded by the export timeout) and stop the exporter's thread."""
        self.provider.shutdown()


class SpanEnd:
    """A child span of a request that its owner ends once, with the outcome (None: success)."""

    __slots__ = ("redact", "span")

    def __init__(self, span: Span, redact: Callable[[str], str]) -> None:
        self.span = span
        self.redact = redact

    def end(self, error: BaseException | None) -> None:
        """End the span; a failure sets its error status (the message redacted, then cut)."""
        span = self.span
        if error is not None and span.is_recording():
            _fail(span, error, self.redact)
        span.end()


class RequestTrace:
    """The spans of one request; every method is cheap when the request was not sampled."""

    __slots__ = ("anchor_ns", "anchor_perf", "context", "owner", "sampled", "span")

    def __init__(self, owner: RequestTracer, span: Span, started: float) -> None:
        self.owner = owner
        self.span = span
        self.sampled = span.is_recording()
        self.context = set_span_in_context(span, Context())
        # perf_counter seconds -> epoch nanoseconds, for span times taken from the request record
        self.anchor_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        self.anchor_perf = started

    def _ns(self, perf: float) -> int:
        return self.anchor_ns + int((perf - self.anchor_perf) * 1e9)

    def resolved(self, route: Route, request: ChatRequest) -> None:
        """The request names its route: what the model is asked for."""
        if not self.sampled:
            return
        span = self.span
        span.update_name(f"chat {route.model}")
        requested = request.max_completion_tokens or request.max_tokens
        attributes: dict[str, Any] = {
            "gen_ai.request.model": route.model,
            "http.route": route.path,
            "router.route": route.path,
            "router.stream": request.stream,
        }
        max_tokens = clamp_max_tokens(requested, route.config.policy.max_tokens)
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        span.set_attributes(attributes)

    def queue_wait(self, replica: RouteReplica) -> SpanEnd:
        """A span for the wait for a concurrency slot on `replica`'s upstream."""
        span = self.owner.tracer.start_span(
            "queue wait",
            context=self.context,
            kind=SpanKind.INTERNAL,
            attributes={"router.upstream": replica.name},
        )
        return SpanEnd(span, self.owner.redact)

    def attempt(
        self, route: Route, replica: RouteReplica, number: int, fallback: bool, call: ChatCall
    ) -> SpanEnd:
        """A client span for one upstream attempt; `call` gets the traceparent naming it."""
        owner = self.owner
        config = replica.upstream.config
        address, port = owner.server_of(config.base_url)
        span = owner.tracer.start_span(
            f"chat {route.model}",
            context=self.context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": config.type,
                "gen_ai.system": config.type,
                "gen_ai.request.model": route.model,
                "server.address": address,
                "server.port": port,
                "http.request.method": "POST",
                "router.route": route.path,
                "router.upstream": replica.name,
                "router.attempt": number,
                "router.fallback": fallback,
            },
        )
        headers: dict[str, str] = {}
        owner.propagator.inject(headers, context=set_span_in_context(span, self.context))
        call.headers = headers
        return SpanEnd(span, owner.redact)

    def served(self, provider: str) -> None:
        """The answer started on an upstream of type `provider` (ollama, openai)."""
        if self.sampled:
            self.span.set_attributes({"gen_ai.provider.name": provider, "gen_ai.system": provider})

    def finish(self, record: RequestRecord, stats: AnswerStats | None) -> None:
        """End the server span with what the request record knows."""
        span = self.span
        if not self.sampled:
            span.end()
            return
        attributes: dict[str, Any] = {
            "http.response.status_code": record.status,
            "router.outcome": record.outcome,
            "router.retries": record.retries,
            "router.upstream": record.upstream,
        }
        if record.route != "-":
            attributes["router.route"] = record.route
        if record.principal is not None:
            attributes["router.key"] = record.principal
        dialect = getattr(record, "dialect", None)  # requests in other dialects carry theirs
        if dialect:
            attributes["router.dialect"] = dialect
        if record.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
        if record.completion_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
        if stats is not None:
            if stats.model:
                attributes["gen_ai.response.model"] = stats.model
            if stats.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = (stats.finish_reason,)
        overhead = record.overhead
        if overhead is not None:
            attributes["router.overhead_ms"] = round(overhead * 1000.0, 3)
        span.set_attributes(attributes)
        if record.first_token_at is not None:
            ttft = record.first_token_at - record.started
            span.add_event(
                "first_token", {"router.ttft_ms": round(ttft * 1000.0, 3)}, self._ns(record.first_token_at)
            )
        if record.status >= 500:
            span.set_status(Status(StatusCode.ERROR, record.outcome))
            span.set_attribute("error.type", record.outcome)
        span.end(self._ns(record.ended_at) if record.ended_at is not None else None)


def _fail(span: Span, error: BaseException, redact: Callable[[str], str]) -> None:
    kind = type(error).__name__
    attributes: dict[str, Any] = {"error.type": kind}
    status = getattr(error, "upstream_status", None)  # what the upstream answered, when it did
    if isinstance(error, UpstreamError) and isinstance(status, int):
        attributes["http.response.status_code"] = status
    span.set_attributes(attributes)
    message = str(getattr(error, "message", "") or error)
    span.set_status(Status(StatusCode.ERROR, redact(message)[:MESSAGE_LIMIT] or kind))
