"""POSTs to an upstream on aiohttp's pooled connections, without `ClientSession`'s per-request machinery.

Every answer the router relays starts with one POST of a JSON body to a model server. aiohttp's
`ClientSession.request` pays, on every call, for what the router never uses: redirects, cookies, proxies,
authentication helpers, trace hooks, client middlewares, upload trackers, per-request header merging
into case-insensitive dicts, a payload registry lookup and a separate task to write the body. Measured on
this project's 2-core machine (tests/perf/results/findings.md), a POST and the read of its answer cost
about 48 us of CPU through `ClientSession` and about 16 us this way: a third of the router's own work per
request.

Everything that talks HTTP is still aiohttp's, unchanged: the connector (the pool and its `limit`, opening
connections, keep-alive and its expiry, TLS, the DNS cache), the response protocol with its C parser, the
body's `StreamReader`, the header serializer (which refuses CR or LF in a header) and the exceptions, so
every failure reaches `router.upstreams.errors.from_client_exception` as the same exception it always
did. What this module does is what `ClientSession._request` does for a POST that follows no redirect, in
the same order: take a pooled connection for the URL's connection key, set the response parser, write the
head and the body, read past informational (1xx) answers, and give the connection back at the body's end.

The bytes an upstream receives are pinned by tests/upstreams/test_wire.py, and the failure behaviour
(timeouts, resets, a full pool, redirects, error statuses, cut bodies) by the adapters' socket tests.
aiohttp is pinned to the minor version this was written against (pyproject.toml): the response
protocol's parameters and the header serializer are not public API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import hdrs
from aiohttp.client_reqrep import ClientRequest, ConnectionKey, RequestInfo
from aiohttp.helpers import HeadersMixin
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_writer import _serialize_headers
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

# What ClientSession uses by default (its read_bufsize, max_line_size, max_field_size, max_headers).
_READ_BUFSIZE = 2**16
_MAX_LINE_SIZE = 8190
_MAX_FIELD_SIZE = 8190
_MAX_HEADERS = 128
# Headers each POST sets itself: a table's own header of the same name is left out (as aiohttp's merge
# of a session's default headers with a request's would replace it).
_PER_REQUEST = frozenset(
    name.lower() for name in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.TRANSFER_ENCODING, "x-request-id")
)
_JSON = "application/json"


class RouterRequest(ClientRequest):
    """aiohttp's request with the router's automatic headers decided once, not on every request.

    Model servers on a private network gain nothing from compression and cost CPU to decompress, and a
    user agent tells them nothing: the router sends neither `Accept-Encoding` nor `User-Agent`, and
    `Accept: */*` unless the request has its own. aiohttp's `skip_auto_headers` says the same, but pays
    for it on every request (two header dicts built and merged), which profiles showed. It relies on
    aiohttp calling `update_auto_headers` while building a request (the probes' session's `request_class`,
    and `Endpoint`'s headers below); tests/upstreams/test_wire.py pins the bytes an upstream receives, so
    an aiohttp upgrade that changes that shows there.
    """

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        """Add `Accept: */*` when missing; nothing else."""
        headers = self.headers
        if hdrs.ACCEPT not in headers:
            headers[hdrs.ACCEPT] = "*/*"


class _KeyRequest(RouterRequest):
    """A request never sent: what the connector needs to pick or open a connection (host, port, TLS), and
    the headers aiohttp would put first (Host, the session's defaults), built once per URL."""

    def __init__(self, url: URL, session: aiohttp.ClientSession) -> None:
        super().__init__(
            hdrs.METH_POST, url, loop=asyncio.get_running_loop(), session=session, headers=session.headers
        )
        self._connection_key = super().connection_key

    @property
    def connection_key(self) -> ConnectionKey:
        """The pool's key for this URL, computed once (aiohttp's computes it on every access)."""
        return self._connection_key


class Endpoint:
    """One URL an upstream is POSTed JSON at, prepared once: its connection key and its fixed headers."""

    __slots__ = ("_accept", "_lead", "_line", "key", "url")

    def __init__(self, url: URL, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.key = _KeyRequest(url, session)  # what `connector.connect` is given
        self._line = f"POST {url.raw_path_qs} HTTP/1.1"
        fixed = self.key.headers  # Host, the session's headers, Accept (RouterRequest)
        self._lead = {
            name: value
            for name, value in fixed.items()
            if name.lower() not in _PER_REQUEST and name.lower() != "accept"
        }
        self._accept = fixed.get(hdrs.ACCEPT, "*/*")  # after the request's own headers, as aiohttp puts it

    def head(self, length: int, request_id: str, extra: Mapping[str, str] | None) -> bytes:
        """The request line and headers of a POST of `length` bytes of JSON, serialized by aiohttp."""
        headers = self._lead.copy()
        headers[hdrs.CONTENT_TYPE] = _JSON
        headers["X-Request-ID"] = request_id
        if extra:
            headers.update(extra)
        headers[hdrs.ACCEPT] = self._accept
        headers[hdrs.CONTENT_LENGTH] = str(length)
        return _serialize_headers(self._line, headers)  # type: ignore[arg-type]


class Poster:
    """One upstream's POSTs, on its session's connection pool; an `Endpoint` per URL, made on first use
    (inside the event loop the pool belongs to). The URLs are the adapter's own (a handful: chat,
    completions, embeddings), never a client's, so the endpoints kept are bounded."""

    __slots__ = ("_connector", "_endpoints", "_session")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._connector = session.connector
        self._endpoints: dict[URL, Endpoint] = {}

    def endpoint(self, url: URL) -> Endpoint:
        """The prepared endpoint of `url`."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = Endpoint(url, self._session)
        return endpoint

    async def post(
        self,
        url: URL,
        body: bytes,
        request_id: str,
        timeout: aiohttp.ClientTimeout,
        extra: Mapping[str, str] | None = None,
    ) -> PooledAnswer:
        """POST `body` (JSON) to `url`; the answer once its head has arrived (aiohttp's errors on failure).

        `timeout.connect` bounds taking a connection (waiting for a free pooled one, and opening one);
        `timeout.sock_read`, when set, bounds every wait for the upstream's bytes. The caller owns the
        answer and must release or close it (an abandoned one is closed by aiohttp's connection at its
        collection, with a warning).
        """
        endpoint = self.endpoint(url)
        head = endpoint.head(len(body), request_id, extra)
        connector = self._connector
        if connector is None:
            raise RuntimeError("Session is closed")
        try:
            connection = await connector.connect(endpoint.key, [], timeout)
        except TimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}") from exc
        try:
            return await _exchange(connection, head, body, timeout, connector, url)
        except BaseException:
            connection.close()
            raise


async def _exchange(
    connection: Any, head: bytes, body: bytes, timeout: aiohttp.ClientTimeout, connector: Any, url: URL
) -> PooledAnswer:
    """Write the request on `connection` and read the head of its answer (past any 1xx)."""
    protocol = connection.protocol
    protocol.set_response_params(
        read_until_eof=True,
        read_timeout=timeout.sock_read,
        read_bufsize=_READ_BUFSIZE,
        timeout_ceil_threshold=connector._timeout_ceil_threshold,
        max_line_size=_MAX_LINE_SIZE,
        max_field_size=_MAX_FIELD_SIZE,
        max_headers=_MAX_HEADERS,
    )
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    transport.writelines((head, body))
    protocol.start_timeout()
    while True:
        try:
            message, payload = await protocol.read()
        except HttpProcessingError as exc:
            info = RequestInfo(url, hdrs.METH_POST, CIMultiDictProxy(CIMultiDict()), url)
            raise aiohttp.ClientResponseError(
                info, (), status=exc.code, message=exc.message, headers=exc.headers
            ) from exc
        if message.code < 100 or message.code > 199 or message.code == 101:
            return PooledAnswer(connection, message, payload)


class PooledAnswer(HeadersMixin):
    """An upstream's answer to a `Poster.post`: its status, headers and body stream, as aiohttp's
    `ClientResponse` offers them (the part the router uses), holding its pooled connection until the body
    ends (then it goes back to the pool by itself), `release` or `close`."""

    def __init__(self, connection: Any, message: Any, payload: aiohttp.StreamReader) -> None:
        self._connection = connection
        self.status: int = message.code
        self.reason: str = message.reason
        self._headers = message.headers
        self.content = payload
        payload.on_eof(self.release)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The answer's headers."""
        return self._headers  # type: ignore[return-value]

    def release(self) -> None:
        """Give the connection back: to the pool if the body was read to its end, else it is closed (the
        rest of an unread body would be taken for the next answer)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release()  # aiohttp's connector closes it unless the answer ended cleanly

    def close(self) -> None:
        """Close the connection (what stops an upstream's generation when the client has gone)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def read(self) -> bytes:
        """The whole body (unbounded: the router reads bodies with `http.read_capped` instead)."""
        try:
            return await self.content.read()
        finally:
            self.release()
