"""A tiny OTLP/HTTP trace receiver on loopback: what a collector sees of the router's spans.

It accepts `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (gzip or not), decodes it with
`opentelemetry-proto` and keeps every span as plain data. `discard=True` answers without decoding or
keeping anything (for benchmarks: the cost measured is the router's, not the receiver's).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_OK = ExportTraceServiceResponse().SerializeToString()
SERVER, CLIENT, INTERNAL = 2, 3, 1  # Span.SpanKind values
STATUS_OK_OR_UNSET, STATUS_ERROR = (0, 1), 2


@dataclass
class ReceivedSpan:
    """One span as the collector received it (ids in lower-case hex, as in traceparent)."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int
    headers: dict[str, str] = field(default_factory=dict)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class OTLPReceiver:
    """`with OTLPReceiver() as receiver:` serves at `receiver.url`; `spans` is what arrived so far."""

    def __init__(self, discard: bool = False) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if not discard:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    receiver._take(body, {k.lower(): v for k, v in self.headers.items()})
                else:
                    with receiver._lock:
                        receiver.posts += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(_OK)))
                self.end_headers()
                self.wfile.write(_OK)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    def _take(self, body: bytes, headers: dict[str, str]) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            status_message=span.status.message,
                            events=[(event.name, _attributes(event.attributes)) for event in span.events],
                            resource=resource,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            headers=headers,
                        )
                    )
        with self._lock:
            self.posts += 1
            self._spans.extend(spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        """Forget what arrived so far."""
        with self._lock:
            self._spans.clear()
            self.posts = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
