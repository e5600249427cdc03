"""Bounds on what one client connection may hold: its head's size, its time, its reading, and their number.

uvicorn's httptools protocol, the faster one this router runs, trusts its clients. It buffers a head of any
size; it bounds the idle time between two requests (`timeout_keep_alive`) but not a request that never
finishes: a socket that sends one byte, or a header a byte at a time, or half a body, stays open for
ever; it accepts as many connections as the process has file descriptors, after which the router's own
upstream connections and health probes fail; and a client that stops reading holds its response, and the
upstream call behind it, for as long as it likes. `BoundedHttpToolsProtocol` closes each of those doors:

- the head: at most `MAX_HEADER_BYTES` (431), received within `request_head_timeout` of the connection
  or of the first byte of a later request on it (408, then the connection is closed);
- the body: received within `request_body_timeout` of the end of the head. A total, not an idle bound
  between reads: a body dripped one byte just under an idle bound would hold the connection for days;
- the reader: a response the client does not read for `client_write_timeout` (the socket and the
  transport's buffer stay full) ends the connection, which cancels a stream and its upstream call;
- the number: past `max_connections` a new connection closes the longest-idle one (no request in
  progress: kept alive between requests, or still sending a head), if that one has been idle for at
  least `EVICTION_GRACE`; otherwise the newcomer is answered 503 and closed.

The cost is one timer per connection, re-armed lazily: phase changes only move a deadline, and the timer,
when it fires, either acts or sleeps until the current deadline. Requests pay two `loop.time()` calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.errors import RouterError, encode_error
from router.security.redact import Redactor

MAX_HEADER_BYTES = 32 * 1024
"""Request line plus headers; nginx's default ceiling (4 x 8k buffers), twice Node's."""

EVICTION_GRACE = 1.0
"""Seconds a connection is safe from being closed to make room: time for its head, already on its way in,
to be read. Without it, a flood reconnecting faster than the cap turns over would close every newcomer,
real clients included, before the router had read a byte of theirs."""

REPORT_INTERVAL = 10.0
"""Seconds between two log lines about closed connections: a flood of them must not flood the log."""

log = logging.getLogger("router.server")


def _response(status: int, reason: bytes, error: RouterError) -> bytes:
    """A whole HTTP/1.1 response written straight to the transport, which is closed after it."""
    reply = encode_error(error, Redactor())  # the messages quote nothing secret
    body = reply.body
    extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items()).encode()
    return (
        b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"connection: close\r\n\r\n" + body
    )


def _refusal() -> bytes:
    error = RouterError(
        f"the request line and headers are larger than the router accepts ({MAX_HEADER_BYTES} bytes)",
        status=431,
        type="invalid_request_error",
        code="request_header_fields_too_large",
    )
    return _response(431, b"Request Header Fields Too Large", error)


def _timed_out(what: str, key: str, seconds: float) -> bytes:
    error = RouterError(
        f"the {what} did not arrive within {seconds:g}s (server.{key}); send it at once, "
        "or ask the operator to raise the limit",
        status=408,
        type="invalid_request_error",
        code="request_timeout",
    )
    return _response(408, b"Request Timeout", error)


def _busy(limit: int) -> bytes:
    error = RouterError(
        f"the router is serving as many connections as it accepts ({limit}, server.max_connections); "
        "retry shortly",
        status=503,
        type="server_error",
        code="too_many_connections",
        retry_after=1.0,
    )
    return _response(503, b"Service Unavailable", error)


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error, which uvicorn answers."""


class ClientLimits:
    """The bounds of one server's client connections, and the connections it may close first.

    One per uvicorn server (so per worker process): `idle` holds its connections that have no request in
    progress, with the time they became idle, longest idle first (a dict keeps insertion order and
    removes in O(1)).
    """

    def __init__(
        self,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        write_timeout: float = 30.0,
        max_connections: int = 4096,
    ) -> None:
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        # the answers are the same for every connection: made once, they cost nothing in a flood
        self.head_late = _timed_out("request line and headers", "request_head_timeout", head_timeout)
        self.body_late = _timed_out("request body", "request_body_timeout", body_timeout)
        self.busy = _busy(max_connections)
        self.idle: dict[BoundedHttpToolsProtocol, float] = {}
        self._closed: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into worker processes before any connection exists: only the settings travel.
        return {**self.__dict__, "idle": {}, "_closed": Counter(), "_report": None}

    def make_room(self, now: float) -> bool:
        """Close the longest-idle connection; False when none has been idle for `EVICTION_GRACE`."""
        for victim, since in self.idle.items():
            if now - since < EVICTION_GRACE:
                return False
            del self.idle[victim]
            self.closed("idle at the connection cap")
            victim.transport.abort()  # frees its descriptor now, whatever is left in its buffers
            return True
        return False

    def closed(self, why: str) -> None:
        """Count a connection the router ended; a warning sums them up, at most every REPORT_INTERVAL."""
        self._closed[why] += 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(REPORT_INTERVAL, self._log)

    def _log(self) -> None:
        self._report = None
        counts, self._closed = self._closed, Counter()
        if counts:
            log.warning(
                "closed %d client connections in the last %gs: %s",
                sum(counts.values()),
                REPORT_INTERVAL,
                ", ".join(f"{n} {why}" for why, n in counts.most_common()),
            )


class HeadWithBody(asyncio.Transport):
    """The client connection as one response sees it: the response's head waits for its first body bytes.

    uvicorn writes a response's status line and headers, then its body, in two writes: two system calls
    and two TCP segments for every whole answer (the head is a few hundred bytes). Held here until the
    next write, the head leaves with the body in one `writelines` (one system call with uvloop, nothing
    copied). A head whose body does not follow in the same turn of the event loop (a stream waiting for
    its first event) is written at the end of that turn, so nothing waits longer than before but for the
    rest of the turn; a close writes what is held first. Only the response's own writes pass through
    here: the protocol's own answers (400, 408, 431) release the held head first (`release`).

    It relies on uvicorn's `RequestResponseCycle` writing through its `transport` attribute (write,
    close, is_closing), which `on_headers_complete` replaces for each new cycle;
    tests/security/test_head_with_body.py fails if a uvicorn upgrade changes that.
    """

    __slots__ = ("_first", "_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        # no BaseTransport.__init__: its `extra` dict is never read here (`get_extra_info` is the real one's)
        self.transport = transport
        self._loop = loop
        self._held: bytes | bytearray | memoryview | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """The first write (the head) is held until the next one or the end of the loop's turn."""
        if self._first:
            self._first = False
            self._held = data  # uvicorn's head: bytes it made for this write, never changed after
            self._loop.call_soon(self.release)
            return
        held = self._held
        if held is None:
            self.transport.write(data)
        else:
            self._held = None
            self.transport.writelines((held, data))

    def release(self) -> None:
        """Write the held head now (if the connection is still open)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.release()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head size, on time, and on connections.

    Two counts for the head size, because httptools hands over a header only once it is complete: the
    parsed size (URL and headers, checked as they arrive) catches a big head that came in one read, and
    the bytes received while the head is still incomplete catch a head that never ends, before it is all
    held in memory. The clocks are described in the module's docstring.
    """

    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, limits: ClientLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits if limits is not None else ClientLimits()
        self._received = 0  # bytes read while the head is incomplete
        self._parsed = 0  # bytes of URL and headers parsed
        self._in_head = True
        self._begun = False  # a request line has started (CRLFs between requests do not start one)
        self._too_large = False
        self._deadline: float | None = None  # when the head or body being received is late; None: no clock
        self._timer: asyncio.TimerHandle | None = None  # fires at or before the deadline
        self._write_timer: asyncio.TimerHandle | None = None  # armed while the client does not read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        now = self.loop.time()
        if len(self.connections) > limits.max_connections and not limits.make_room(now):
            limits.closed("refused at the connection cap, every connection busy")
            transport.write(limits.busy)
            transport.close()
            return
        limits.idle[self] = now
        self._deadline = now + limits.head_timeout
        self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.limits.idle.pop(self, None)
        self._deadline = None
        for timer in (self._timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._write_timer = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._received += len(data)
            if self._deadline is None:  # the first bytes of the next request on a kept-alive connection
                self._clock(self.limits.head_timeout)
        super().data_received(data)
        if self._in_head and self._received > self.max_header_bytes and not self.transport.is_closing():
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._begun = True
        self._parsed = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.limits.idle.pop(self, None)
        self._clock(self.limits.body_timeout)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = HeadWithBody(self.transport, self.loop)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._begun = False
        self._received = 0
        self._deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._begun:  # only stray CRLFs came while answering: keep-alive rules, not the head clock
            self._deadline = None
            self._received = 0
        if not self.transport.is_closing() and not self.pipeline:
            idle = self.limits.idle
            idle.pop(self, None)  # re-inserted: the order is the order of becoming idle
            idle[self] = self.loop.time()

    def handle_websocket_upgrade(self) -> None:
        self._deadline = None  # the connection now belongs to the websocket protocol
        self.limits.idle.pop(self, None)
        super().handle_websocket_upgrade()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout, self._not_reading)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _release_head(self) -> None:
        """Write the head the current response holds, before the protocol writes anything of its own."""
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, HeadWithBody):
            cycle.transport.release()

    def send_400_response(self, msg: str) -> None:
        self._release_head()
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > self.max_header_bytes:
            self._too_large = True
            raise HeadTooLarge

    def _refuse(self) -> None:
        self._too_large = True
        self.logger.warning("refused a request whose head is larger than %d bytes", self.max_header_bytes)
        self._release_head()
        self.transport.write(_refusal())
        self.transport.close()

    def _clock(self, seconds: float) -> None:
        """Start the clock of a head or body; the running timer is reused if it fires early enough."""
        self._deadline = self.loop.time() + seconds
        if self._timer is None:
            self._timer = self.loop.call_later(seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if now < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        limits = self.limits
        cycle = self.cycle
        if self._in_head:
            if cycle is not None and not cycle.response_complete:
                # Bytes of a next request arrived while this one is still answered (a pipelined request,
                # or a stray CRLF after a body): the answer in progress is not the client's delay.
                self._clock(limits.head_timeout)
                return
            self._expire("request head timeout", limits.head_late if self._received else None)
        else:
            if self.flow.read_paused:  # the router stopped reading, not the client sending
                self._clock(limits.body_timeout)
                return
            late = None if cycle is None or cycle.response_started else limits.body_late
            self._expire("request body timeout", late)

    def _expire(self, why: str, answer: bytes | None) -> None:
        """End a connection whose client was too slow; tell it why when no response has begun."""
        self.limits.closed(why)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # What uvicorn does when the connection is lost, done now: the application waiting for the body
            # sees the client leave, and whatever it answers is not written after our 408.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer is not None:
            self._release_head()
            self.transport.write(answer)
        self.transport.close()

    def _not_reading(self) -> None:
        self._write_timer = None
        if self.transport.is_closing():
            return
        self.limits.closed("client not reading")
        self.transport.abort()  # close() would wait for a buffer the client is not reading
