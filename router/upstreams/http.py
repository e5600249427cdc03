"""The HTTP plumbing both adapters share: the pooled session, sending a request, judging the answer.

aiohttp is used for the upstream leg because the HTTP client is the measured bottleneck of a relay, and
aiohttp's was the fastest one measured (the figures are in the README's performance section). Only this
module and the adapters know about aiohttp.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec
from yarl import URL

from router.config.models import UpstreamConfig
from router.echo import shown
from router.policies.retry import retry_after_from_headers
from router.security.redact import Redactor
from router.upstreams.base import AnswerStats, EventStream, Limits, UpstreamAdapter
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamError,
    UpstreamPoolExhausted,
    UpstreamRedirect,
    UpstreamReset,
    UpstreamStatus,
    UpstreamTimeout,
    from_client_exception,
)
from router.upstreams.pooled import PooledAnswer, Poster, RouterRequest

Answer = aiohttp.ClientResponse | PooledAnswer
"""An upstream's answer: a chat call's (`Poster.post`) or a probe's (aiohttp's session)."""
AnswerT = TypeVar("AnswerT", aiohttp.ClientResponse, PooledAnswer)

_ERROR_BODY_LIMIT = 64 * 1024  # an error page is read for its message only
_PROBE_CONNECTIONS = 4  # health probes' own pool: they never queue behind client traffic
_POOL_RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Wire:
    """What the HTTP plumbing knows of one upstream, prepared once: its name, its size bounds, its secrets.

    `scrub` masks this upstream's own credentials (api_key, header values) in messages built from what
    it sent back: an upstream that quotes the request's headers in an error must not have them repeated
    to clients, logs or `/status`, whatever else redacts further down the line.
    """

    name: str
    max_connections: int
    max_response_bytes: int
    max_line_bytes: int
    scrub: Callable[[str], str]

    @classmethod
    def of(cls, config: UpstreamConfig) -> Wire:
        """The wire view of an upstream's configuration."""
        secrets = list(config.headers.values())
        secrets += [value.partition(" ")[2].strip() for value in config.headers.values()]
        if config.api_key is not None:
            secrets.append(config.api_key.get_secret_value())
        return cls(
            name=config.name,
            max_connections=config.max_connections,
            max_response_bytes=config.max_response_bytes,
            max_line_bytes=config.max_line_bytes,
            scrub=Redactor(secrets),
        )


# Set by `_Pool` in the requesting task when its wait for a free pooled connection ended in failure: the
# connect timeout that follows is then the router's own back-pressure, not the upstream's fault.
_POOL_WAIT_FAILED: ContextVar[bool] = ContextVar("pool_wait_failed", default=False)


class _Pool(aiohttp.TCPConnector):
    """aiohttp's connector, telling a full pool apart from an upstream that does not accept connections.

    aiohttp's `ClientTimeout.connect` covers both waiting for a free pooled connection (`limit`) and
    opening the socket (`sock_connect`), and raises the same `ConnectionTimeoutError` for either. The
    wait goes through `_wait_for_available_connection` only when the pool is full, so marking its failure
    costs nothing on the hot path. With an aiohttp that lacks the hook the mark is never set, and a full
    pool reads as an unreachable upstream, as before.
    """

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        try:
            await super()._wait_for_available_connection(key, traces)  # type: ignore[misc]
        except BaseException:
            _POOL_WAIT_FAILED.set(True)
            raise


class deadline:
    """The route's `timeout` for one attempt; running out of it is an UpstreamTimeout (504).

    What `asyncio.timeout` does (a timer that cancels the task; at the exit, that cancellation, and only
    it, becomes the timeout: a cancellation from elsewhere, such as the client going away, stays one),
    in one small class: every attempt enters one, and a generator-based context manager around
    `asyncio.timeout` cost twice the timer itself. A TimeoutError raised by the body becomes the same
    UpstreamTimeout, as it always has.
    """

    __slots__ = ("_cancelling", "_fired", "_handle", "_task", "seconds", "url")

    def __init__(self, seconds: float, url: str) -> None:
        self.seconds = seconds
        self.url = url

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._handle = task.get_loop().call_later(self.seconds, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self._handle.cancel()
        if self._fired:
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise self._expired() from None
        elif exc_type is not None and issubclass(exc_type, TimeoutError):
            raise self._expired() from None

    def _expired(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"upstream at {self.url} did not start answering within {self.seconds:g}s (the route's timeout)"
        )


def new_session(config: UpstreamConfig, limit: int | None = None) -> aiohttp.ClientSession:
    """One pooled client per upstream, sized by the upstream's `max_connections` (or `limit`)."""
    connector = _Pool(limit=limit or config.max_connections, limit_per_host=0, ttl_dns_cache=300)
    headers = dict(config.headers)
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        # No Accept-Encoding nor User-Agent (`RouterRequest`); a cookie jar has nothing to do between a
        # gateway and its upstreams.
        request_class=RouterRequest,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def new_probe_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """The health probes' own small pool: client streams holding every pooled connection must not make
    probes queue, time out, and mark a perfectly responsive upstream down."""
    return new_session(config, limit=_PROBE_CONNECTIONS)


async def post_json(
    poster: Poster,
    url: URL,
    payload: Mapping[str, Any],
    limits: Limits,
    request_id: str,
    wire: Wire,
    extra_headers: Mapping[str, str] | None = None,
) -> PooledAnswer:
    """POST `payload`, and return the answer only if its status is a success.

    Error statuses become `UpstreamStatus` with the upstream's own message; connection failures become
    the matching `UpstreamError`. The caller owns the returned answer and must release or close it.
    `url` is a parsed URL prepared once per upstream: parsing it again on every request is measurable.
    `extra_headers` come from the router (the attempt's `traceparent`), never from the client.
    """
    body = msgspec.json.encode(payload)
    request = poster.post(url, body, request_id, limits.client_timeout, extra_headers)
    return await _send(request, url, wire)


async def _send(request: Awaitable[AnswerT], url: URL | str, wire: Wire) -> AnswerT:
    """Await an upstream request; connection failures, redirects and error statuses become UpstreamErrors."""
    try:
        response = await request
    except (TimeoutError, aiohttp.ClientError) as exc:
        if isinstance(exc, aiohttp.ConnectionTimeoutError) and _POOL_WAIT_FAILED.get():
            _POOL_WAIT_FAILED.set(False)
            raise UpstreamPoolExhausted(
                f"all {wire.max_connections} pooled connections to upstream {wire.name!r} at {url} are "
                "busy (its max_connections) and none came free within the route's connect_timeout; retry "
                "later, or raise max_connections (or set max_concurrency with max_queue to queue requests)",
                retry_after=_POOL_RETRY_AFTER,
            ) from None
        raise from_client_exception(exc, url) from exc
    if response.status >= 300:
        try:
            if response.status < 400:
                raise _redirect(response, url, wire)
            raise await status_error(response, url, wire)
        finally:
            response.release()  # an unread body closes the connection rather than pooling it
    return response


def _redirect(response: Answer, url: URL | str, wire: Wire) -> UpstreamError:
    location = response.headers.get("Location") or "(no Location header)"
    if len(location) > 300:
        location = location[:300] + "..."
    return UpstreamRedirect(
        wire.scrub(
            f"upstream {wire.name!r} at {url} answered a redirect (HTTP {response.status}) to {location}; "
            "the router never follows redirects: point base_url at the model server itself"
        )
    )


async def status_error(response: Answer, url: URL | str, wire: Wire) -> UpstreamError:
    """Turn an error answer into an error that keeps the upstream's words (OpenAI or Ollama shaped)."""
    try:
        raw, _ = await read_capped(response, _ERROR_BODY_LIMIT)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return from_client_exception(exc, url)
    message = wire.scrub(upstream_message(raw, response.content_type))
    if _is_html(raw, response.content_type):
        # Not the model server's own error: a proxy or web server answered in its place.
        return BadUpstreamResponse(f"upstream at {url} answered HTTP {response.status} with {message}")
    retry_after = retry_after_from_headers(response.headers)
    return UpstreamStatus(
        f"upstream at {url} answered HTTP {response.status}: {message}",
        status=response.status,
        retry_after=retry_after,
    )


async def read_capped(response: Answer, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more (the rest is left unread).

    Pieces are kept in a list and joined once: an endless body costs at most `limit` bytes and one copy.
    """
    content = response.content
    pieces: list[bytes] = []
    size = 0
    while True:
        piece = await content.readany()
        if not piece:
            break
        size += len(piece)
        if size > limit:
            pieces.append(piece[: limit - size + len(piece)])
            return b"".join(pieces), True
        pieces.append(piece)
    return (pieces[0] if len(pieces) == 1 else b"".join(pieces)), False


async def read_body(response: Answer, url: str, limit: int, wire: Wire) -> bytes:
    """A whole success body, refused (502, connection closed) beyond `limit` bytes."""
    declared = response.content_length
    try:
        if declared is not None and declared > limit:
            raw, more = b"", True  # refused before a byte of it is read
        else:
            raw, more = await read_capped(response, limit)
    except (TimeoutError, aiohttp.ClientError) as exc:
        response.close()
        raise from_client_exception(exc, url) from exc
    if more:
        response.close()  # not back to the pool: the rest of the body is still on its way
        raise BadUpstreamResponse(
            f"upstream {wire.name!r} at {url} answered a body larger than {limit} bytes (its "
            "max_response_bytes); the answer was cut off and refused"
        )
    response.release()
    return raw


def _is_html(raw: bytes, content_type: str) -> bool:
    return "html" in content_type or raw.lstrip()[:1] == b"<"


def upstream_message(raw: bytes, content_type: str) -> str:
    """The human message inside an upstream error body, whatever its dialect."""
    if _is_html(raw, content_type):
        return "an HTML error page (is a proxy or a web server answering instead of the model server?)"
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or "an empty body"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return shown(str(error.get("message") or error), 500)  # an upstream may echo a huge client value
    if error is not None:
        return shown(str(error), 500)
    return str(data)[:500]


async def read_json(response: Answer, url: str, wire: Wire) -> Any:
    """Read a whole success body (within `max_response_bytes`) as JSON; else a bad upstream response."""
    raw = await read_body(response, url, wire.max_response_bytes, wire)
    return decode_json(raw, url, response.content_type)


def decode_json(raw: bytes, url: str, content_type: str = "application/json") -> Any:
    """Decode a body that must be JSON, naming what came instead when it is not."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        what = upstream_message(raw, content_type)
        raise BadUpstreamResponse(f"upstream at {url} answered a body that is not JSON: {what}") from None


class LineSplitter:
    """Cuts a byte stream into lines of at most `limit` bytes, keeping an unfinished line for the next read.

    The pieces of an unfinished line are kept in a list and joined once, when the line ends: adding each
    read to the previous rest would copy a long line again on every read (quadratic), on the event loop.
    A read no longer than `limit` cannot hold a too-long line of its own, so the common case checks one
    length per read, not one per line. Past the limit, `too_long` is set and the lines before the long
    one are still returned (they are complete, and may be the answer's last good chunks).
    """

    __slots__ = ("_pieces", "_size", "limit", "too_long")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.too_long = False
        self._pieces: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines in what arrived so far (without their line ends)."""
        lines = data.split(b"\n")
        rest = lines.pop()
        if self._pieces:
            return self._continue(lines, rest, data)
        if len(data) > self.limit:
            return self._check(lines, rest)
        if rest:
            self._pieces.append(rest)
            self._size = len(rest)
        return lines

    def _continue(self, lines: list[bytes], rest: bytes, data: bytes) -> list[bytes]:
        """`feed` when an unfinished line was waiting for this read."""
        pieces = self._pieces
        if not lines:  # the unfinished line goes on
            self._size += len(rest)
            if self._size > self.limit:
                self._refuse()
            else:
                pieces.append(rest)
            return lines
        lines[0] = pieces[0] + lines[0] if len(pieces) == 1 else b"".join([*pieces, lines[0]])
        self._pieces = []
        self._size = 0
        if len(data) > self.limit or len(lines[0]) > self.limit:
            return self._check(lines, rest)
        if rest:
            self._pieces.append(rest)
            self._size = len(rest)
        return lines

    def _check(self, lines: list[bytes], rest: bytes) -> list[bytes]:
        """The slow path of a read longer than the limit: look at each line."""
        for index, line in enumerate(lines):
            if len(line) > self.limit:
                self._refuse()
                return lines[:index]
        if len(rest) > self.limit:
            self._refuse()
            return lines
        if rest:
            self._pieces.append(rest)
            self._size = len(rest)
        return lines

    def _refuse(self) -> None:
        self.too_long = True
        self._pieces = []
        self._size = 0

    @property
    def pending(self) -> bytes:
        """Bytes of a line that has not ended yet."""
        return b"".join(self._pieces)


async def read_some(response: Answer, url: str) -> bytes:
    """Whatever bytes arrived next (b"" at the end); safe to cancel, it never loses a partial line."""
    try:
        return await response.content.readany()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise from_client_exception(exc, url) from exc


async def get(session: aiohttp.ClientSession, url: str, want_json: bool, wire: Wire) -> Any:
    """GET for probes: raises unless the status is a success; the JSON body when asked for."""
    response = await _send(session.get(url, allow_redirects=False), url, wire)
    if not want_json:
        response.release()  # an unread body closes the connection
        return None
    return await read_json(response, url, wire)


class LineStream(EventStream):
    """A streamed answer made of lines (Ollama's NDJSON, OpenAI's SSE), complete only at its end marker.

    Subclasses translate one line at a time and set `done` on the end marker; this class does the reading,
    the line cutting, and refuses an answer that stops before its end marker.
    """

    def __init__(self, response: Answer, url: str, stats: AnswerStats, wire: Wire) -> None:
        self.response = response
        self.url = url
        self.wire = wire
        self.lines = LineSplitter(wire.max_line_bytes)
        self.stats = stats
        self.done = False

    @abstractmethod
    def translate(self, line: bytes) -> list[bytes]:
        """The chunk payloads one line yields (none for blank lines and comments)."""

    async def read_first(self) -> list[bytes]:
        """Read until the first payload exists (servers may send comments or empty lines first)."""
        while True:
            batch = await self.read()
            if batch is None or batch:
                return batch or []

    async def read(self) -> list[bytes] | None:
        if self.done:
            return None
        lines = self.lines
        if lines.too_long:
            self._refuse_long_line()
        data = await read_some(self.response, self.url)
        if not data:
            if not lines.pending.strip():
                self.close()
                raise UpstreamReset(
                    f"upstream at {self.url} closed the stream before the answer was complete"
                )
            data = b"\n"
        payloads: list[bytes] = []
        for line in lines.feed(data):
            payloads.extend(self.translate(line))
            if self.done:
                self.response.release()
                return payloads or None
        if lines.too_long and not payloads:  # else the good chunks go first, the error at the next read
            self._refuse_long_line()
        return payloads

    def _refuse_long_line(self) -> None:
        self.close()
        raise BadUpstreamResponse(
            f"upstream {self.wire.name!r} at {self.url} sent a stream line (an SSE event or NDJSON line) "
            f"longer than {self.lines.limit} bytes (its max_line_bytes); the answer was cut off"
        )

    def close(self) -> None:
        if self.done:
            self.response.release()
        else:
            self.response.close()  # not back to the pool: closing is what stops the generation upstream


async def open_line_stream(
    limits: Limits, url: str, start: Callable[[], Awaitable[LineStream]]
) -> tuple[LineStream, list[bytes]]:
    """Start a stream and read its first payloads within the route's timeout; close it on any failure."""
    stream: LineStream | None = None
    try:
        async with deadline(limits.timeout, url):
            stream = await start()
            first = await stream.read_first()
    except BaseException:
        if stream is not None:
            stream.close()
        raise
    return stream, first


class SharedProbe:
    """One GET of a probe URL answers every health question asked about it at about the same time.

    A hundred routes on one Ollama each need "is my model listed?"; one `/api/tags` answers them all. A
    fetch already under way is joined, and a result (success or failure) younger than the caller's
    `max_age` is reused, so probing cost grows with upstreams, not with routes.
    """

    def __init__(self, session: aiohttp.ClientSession, wire: Wire) -> None:
        self.session = session
        self.wire = wire
        self._results: dict[str, tuple[float, Any, BaseException | None]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._names: tuple[Any, frozenset[str]] = (None, frozenset())

    async def get(self, url: str, want_json: bool, max_age: float) -> Any:
        """The body of GET `url` (None unless `want_json`), fetched now or shared.

        A failure is shared as one exception object, so it is raised with a fresh traceback each time:
        re-raising it as it is would chain every raiser's frames onto it. And this frame keeps no
        reference to the result it found stale: a failure raised through it would otherwise hold the
        previous failure (through the traceback's frames), that one the one before, and so on for as
        long as the upstream is down.
        """
        loop = asyncio.get_running_loop()
        cached = self._results.get(url)
        if cached is not None and loop.time() - cached[0] <= max_age:
            if cached[2] is not None:
                raise cached[2].with_traceback(None)
            return cached[1]
        del cached
        pending = self._pending.get(url)
        if pending is None:
            pending = loop.create_task(self._fetch(url, want_json))
            pending.add_done_callback(_retrieved)
            self._pending[url] = pending
        return await asyncio.shield(pending)

    def names(self, listing: Any, read: Callable[[Any], frozenset[str]]) -> frozenset[str]:
        """The model names `read` finds in a fetched listing, read once per listing: thousands of models
        checked against one listing then cost a set lookup each, not a scan of the listing each."""
        known, names = self._names
        if known is not listing:
            names = read(listing)
            self._names = (listing, names)
        return names

    async def _fetch(self, url: str, want_json: bool) -> Any:
        loop = asyncio.get_running_loop()
        try:
            value = await get(self.session, url, want_json, self.wire)
        except BaseException as error:
            self._results[url] = (loop.time(), None, error if isinstance(error, Exception) else None)
            raise
        else:
            self._results[url] = (loop.time(), value, None)
            return value
        finally:
            del self._pending[url]


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a shared fetch's failure as seen: its callers may all have gone (a probe's timeout cancels
    its wait, not the fetch), and asyncio would then log it as "never retrieved", with its traceback."""
    if not task.cancelled():
        task.exception()


class HttpAdapter(UpstreamAdapter):
    """What every HTTP model server's adapter shares: its wire rules (bounds, secrets to scrub) and one
    shared probe fetch, on the probes' own pool."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        probe_session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config, session, probe_session)
        self.wire = Wire.of(config)
        self.poster = Poster(session)  # chat calls' POSTs, on the session's pool (router.upstreams.pooled)
        self.probes = SharedProbe(self.probe_session, self.wire)
