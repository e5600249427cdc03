"""The HTTP plumbing both adapters share: the pooled session, sending a request, judging the answer.

aiohttp is used for the upstream leg because the HTTP client is the measured bottleneck of a relay, and
aiohttp's was the fastest one measured (the figures are in the README's performance section). Only this
module and the adapters know about aiohttp.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from router.config.models import UpstreamConfig
from router.echo import shown
from router.policies.retry import retry_after_from_headers
from router.upstreams.base import AnswerStats, EventStream, Limits
from router.upstreams.errors import (
    BadUpstreamResponse,
    UpstreamError,
    UpstreamReset,
    UpstreamStatus,
    UpstreamTimeout,
    from_client_exception,
)

_ERROR_BODY_LIMIT = 64 * 1024


@asynccontextmanager
async def deadline(seconds: float, url: str) -> AsyncIterator[None]:
    """The route's `timeout` for one attempt; running out of it is an UpstreamTimeout (504)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise UpstreamTimeout(
            f"upstream at {url} did not start answering within {seconds:g}s (the route's timeout)"
        ) from None


def new_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """One pooled client per upstream, sized by the upstream's `max_connections`."""
    connector = aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0, ttl_dns_cache=300)
    headers = dict(config.headers)
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        # Model servers on a private network gain nothing from compression and cost CPU to decompress;
        # a cookie jar has nothing to do between a gateway and its upstreams.
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )


async def post_json(
    session: aiohttp.ClientSession, url: URL, payload: Mapping[str, Any], limits: Limits, request_id: str
) -> aiohttp.ClientResponse:
    """POST `payload`, and return the response only if its status is a success.

    Error statuses become `UpstreamStatus` with the upstream's own message; connection failures become
    the matching `UpstreamError`. The caller owns the returned response and must release or close it.
    `url` is a parsed URL prepared once per upstream: parsing it again on every request is measurable.
    """
    headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
    return await _send(
        session.post(url, data=msgspec.json.encode(payload), headers=headers, timeout=limits.client_timeout),
        url,
    )


async def _send(request: Any, url: URL | str) -> aiohttp.ClientResponse:
    """Await an aiohttp request; connection failures and error statuses become UpstreamErrors."""
    try:
        response: aiohttp.ClientResponse = await request
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise from_client_exception(exc, url) from exc
    if response.status >= 400:
        try:
            raise await status_error(response, url)
        finally:
            response.release()
    return response


async def status_error(response: aiohttp.ClientResponse, url: URL | str) -> UpstreamError:
    """Turn an error answer into an error that keeps the upstream's words (OpenAI or Ollama shaped)."""
    try:
        raw = await response.content.read(_ERROR_BODY_LIMIT)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return from_client_exception(exc, url)
    message = upstream_message(raw, response.content_type)
    if _is_html(raw, response.content_type):
        # Not the model server's own error: a proxy or web server answered in its place.
        return BadUpstreamResponse(f"upstream at {url} answered HTTP {response.status} with {message}")
    retry_after = retry_after_from_headers(response.headers)
    return UpstreamStatus(
        f"upstream at {url} answered HTTP {response.status}: {message}",
        status=response.status,
        retry_after=retry_after,
    )


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


async def read_json(response: aiohttp.ClientResponse, url: str) -> Any:
    """Read a whole success body as JSON; anything else is a bad upstream response."""
    try:
        raw = await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise from_client_exception(exc, url) from exc
    finally:
        response.release()
    return decode_json(raw, url, response.content_type)


def decode_json(raw: bytes, url: str, content_type: str = "application/json") -> Any:
    """Decode a body that must be JSON, naming what came instead when it is not."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        what = upstream_message(raw, content_type)
        raise BadUpstreamResponse(f"upstream at {url} answered a body that is not JSON: {what}") from None


class LineSplitter:
    """Cuts a byte stream into lines, keeping an incomplete last line for the next read."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines in what arrived so far (without their line ends)."""
        if self._rest:
            data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        return lines

    @property
    def pending(self) -> bytes:
        """Bytes of a line that has not ended yet."""
        return self._rest


async def read_some(response: aiohttp.ClientResponse, url: str) -> bytes:
    """Whatever bytes arrived next (b"" at the end); safe to cancel, it never loses a partial line."""
    try:
        return await response.content.readany()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise from_client_exception(exc, url) from exc


async def get(session: aiohttp.ClientSession, url: str, want_json: bool) -> Any:
    """GET for probes: raises unless the status is a success; the JSON body when asked for."""
    response = await _send(session.get(url), url)
    if not want_json:
        response.release()
        return None
    return await read_json(response, url)


class LineStream(EventStream):
    """A streamed answer made of lines (Ollama's NDJSON, OpenAI's SSE), complete only at its end marker.

    Subclasses translate one line at a time and set `done` on the end marker; this class does the reading,
    the line cutting, and refuses an answer that stops before its end marker.
    """

    def __init__(self, response: aiohttp.ClientResponse, url: str, stats: AnswerStats) -> None:
        self.response = response
        self.url = url
        self.lines = LineSplitter()
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
        data = await read_some(self.response, self.url)
        if not data:
            if not self.lines.pending.strip():
                self.close()
                raise UpstreamReset(
                    f"upstream at {self.url} closed the stream before the answer was complete"
                )
            data = b"\n"
        payloads: list[bytes] = []
        for line in self.lines.feed(data):
            payloads.extend(self.translate(line))
            if self.done:
                self.response.release()
                return payloads or None
        return payloads

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

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._results: dict[str, tuple[float, Any, BaseException | None]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}

    async def get(self, url: str, want_json: bool, max_age: float) -> Any:
        """The body of GET `url` (None unless `want_json`), fetched now or shared."""
        loop = asyncio.get_running_loop()
        cached = self._results.get(url)
        if cached is not None and loop.time() - cached[0] <= max_age:
            if cached[2] is not None:
                raise cached[2]
            return cached[1]
        pending = self._pending.get(url)
        if pending is None:
            pending = loop.create_task(self._fetch(url, want_json))
            self._pending[url] = pending
        return await asyncio.shield(pending)

    async def _fetch(self, url: str, want_json: bool) -> Any:
        loop = asyncio.get_running_loop()
        try:
            value = await get(self.session, url, want_json)
        except BaseException as error:
            self._results[url] = (loop.time(), None, error if isinstance(error, Exception) else None)
            raise
        else:
            self._results[url] = (loop.time(), value, None)
            return value
        finally:
            del self._pending[url]
