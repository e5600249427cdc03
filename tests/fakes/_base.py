"""The dialect-independent half of the fake upstreams: lifecycle, behaviours, recording.

A fake runs its own event loop in a daemon thread. That is deliberate: a sync test can drive it with
plain blocking calls, and an async test (whose loop may also run the router under test) never shares a
loop with it, so neither side can starve the other. Every public method is safe to call from any thread
except the fake's own loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import inspect
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Self, TypeVar

from aiohttp import web

DEFAULT_HOST = "127.0.0.1"
T = TypeVar("T")

# Every behaviour with its parameters and their defaults. `None` means "the dialect's natural choice"
# (for instance the error body shape of Ollama vs OpenAI).
BEHAVIOURS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "normal": {},
        # Answer `code` at once. `body`: dict/list -> JSON, str/bytes -> sent as is, None -> the
        # dialect's error object. `retry_after` is a shortcut for the Retry-After header.
        "status": {"code": 500, "body": None, "headers": None, "retry_after": None, "content_type": None},
        # An HTML error page, as a reverse proxy in front of the model server would produce.
        "html": {"code": 502, "body": None},
        # A body that is not JSON (streams too: the whole body is the garbage).
        "garbage": {"code": 200, "body": b"this is not JSON \x00\xff{", "content_type": "application/json"},
        # Stream: `after` good chunks, one line/event that is not JSON (`line`: raw bytes, None -> the
        # dialect's framing of "this is not json"), then the rest. Non-stream: a truncated JSON body.
        "malformed_line": {"after": 2, "line": None, "pause": 0.0},
        # Stream: `after` chunks then a TCP reset. Non-stream: headers and half the body, then a reset.
        "reset_mid_stream": {"after": 2, "pause": 0.0},
        # Read the request, then reset the connection without a byte of answer.
        "reset_before_response": {},
        # Stream: `after` chunks, silence for `seconds`, then the rest. Non-stream: headers and half the
        # body, silence, the rest. The silence ends early when the client goes away.
        "stall_mid_stream": {"after": 2, "seconds": 30.0, "pause": 0.0},
        # Wait `seconds` before anything (or, with headers_first, after the 200 headers) is sent.
        "slow_first_token": {"seconds": 1.0, "headers_first": False},
        # Stream: `after` chunks, then an in-band error (Ollama line / OpenAI SSE event), then the end.
        # Non-stream: a 500 with the dialect's error body.
        # (Every mid-stream fault: `pause` seconds of silence before it, so that it reaches the client in a
        # read of its own rather than with the chunks before it.)
        "error_line": {"after": 2, "message": "fake upstream failure mid-stream", "pause": 0.0},
        # ---- hostile upstreams: they answer, but what they send has no end, or is not theirs to send.
        # A 200 whose body never ends: `chunk_bytes` per write, until the client hangs up (or `max_bytes`,
        # a safety stop so a regression cannot eat the test machine). Non-stream: a JSON string that never
        # closes. Stream: one line that never ends, from the first byte.
        "endless_body": {"chunk_bytes": 64 * 1024, "max_bytes": 256 * 1024 * 1024},
        # Stream: `after` good chunks, then one line (NDJSON line / SSE `data:` line) that never ends.
        # Non-stream: as endless_body.
        "endless_line": {"after": 2, "chunk_bytes": 64 * 1024, "max_bytes": 256 * 1024 * 1024},
        # Stream: `after` good chunks, then empty lines / SSE comments without end (no payload ever
        # comes). Non-stream: a body of whitespace that never ends.
        "flood": {"after": 2, "chunk_bytes": 64 * 1024, "max_bytes": 256 * 1024 * 1024},
        # Answer `code` with `Location: location` (another server, or a path on this one).
        "redirect": {"code": 307, "location": "http://127.0.0.1:9/elsewhere"},
        # An error answer (the dialect's shape) whose message quotes every request header, as a debugging
        # upstream or a careless proxy would: credentials included.
        "echo_headers": {"code": 500},
    }
)
_MID_STREAM = frozenset({"malformed_line", "reset_mid_stream", "stall_mid_stream", "error_line"})
_ENDLESS = frozenset({"endless_body", "endless_line", "flood"})
_BEFORE_MODEL_CHECK = frozenset(
    {"status", "html", "garbage", "reset_before_response", "redirect", "echo_headers"}
)

DEFAULT_HTML = (
    "<html>\r\n<head><title>{code} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{code} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Behaviour:
    """One named way of answering chat requests, with its parameters merged over the defaults."""

    name: str
    params: Mapping[str, Any]

    @classmethod
    def make(cls, name: str, **params: Any) -> Behaviour:
        try:
            defaults = BEHAVIOURS[name]
        except KeyError:
            raise ValueError(f"unknown behaviour {name!r}; known: {', '.join(BEHAVIOURS)}") from None
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            allowed = ", ".join(defaults) or "no parameters"
            raise TypeError(f"behaviour {name!r} takes {allowed}; got unexpected {', '.join(unknown)}")
        return cls(name, MappingProxyType({**defaults, **params}))

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


NORMAL = Behaviour.make("normal")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any  # parsed body; None when it was not JSON
    raw: bytes
    time: float  # time.monotonic()


@dataclass(frozen=True)
class Disconnect:
    """A chat request whose client went away before the answer was complete."""

    path: str
    stream: bool
    chunks_sent: int
    time: float  # time.monotonic()


@dataclass(frozen=True)
class Reply:
    """What a chat request will be answered with, before any dialect framing."""

    model: str
    pieces: tuple[str, ...]
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    stream: bool
    include_usage: bool = False  # OpenAI only
    kind: str = "chat"  # which endpoint: "chat", "embed", "embeddings" (Ollama's legacy), "completions"
    extra: Any = None  # what a kind needs besides the text: vectors, a request's echo or suffix...
    # Tool calls the model makes after its text: (name, arguments object) pairs; finish "tool_calls".
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Frames:
    """A stream as prebuilt byte frames: `head` before the content, `tail` after it."""

    head: tuple[bytes, ...]
    content: tuple[bytes, ...]
    tail: bytes


class BadRequest(Exception):
    """The request itself is wrong; answered with 400 in the dialect's error shape."""


_WORD = re.compile(r"\s*\S+")


def split_words(text: str) -> tuple[str, ...]:
    """Split into word chunks (leading whitespace attached) that concatenate back to `text` exactly."""
    pieces = _WORD.findall(text)
    rest = text[sum(map(len, pieces)) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces.append(rest)
    return tuple(pieces)


@lru_cache(maxsize=64)
def default_pieces(n: int) -> tuple[str, ...]:
    return tuple(f"tok{i}" if i == 0 else f" tok{i}" for i in range(n))


def count_prompt_tokens(messages: Any) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words of all text content."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"].split())
    return total


def _describe(predicate: Callable[[], object]) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, *, interval: float = 0.01) -> T:
    """Poll `predicate` until it is truthy and return its value; TimeoutError after `timeout` s.

    Refuses to run on a thread with a running event loop: blocking there would also freeze the router
    under test when it shares that loop. Use `await async_wait_for(...)` in async tests.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "wait_for() would block the running event loop (and the router on it); "
            "use `await async_wait_for(...)` in async tests"
        )
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true within {timeout}s: {_describe(predicate)}")
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
) -> T:
    """The async twin of `wait_for`: yields to the loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true within {timeout}s: {_describe(predicate)}")
        await asyncio.sleep(interval)


def reset_transport(transport: asyncio.BaseTransport | None) -> None:
    """Abort with SO_LINGER 0 so the peer sees a real RST, like a crashed server, not a polite FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class _Progress:
    __slots__ = ("chunks", "reset_by_us")

    def __init__(self) -> None:
        self.chunks = 0
        self.reset_by_us = False


ProbeMaker = Callable[[], web.StreamResponse]


class FakeUpstream:
    """A model server on a real loopback socket whose behaviour tests switch at runtime.

    Subclasses supply the dialect: routes, request parsing and the byte framing of answers.
    Knobs (plain attributes, read once per request): `models`, `reply_tokens`, `reply_text`,
    `reply_tool_calls` (a list of {"name", "arguments"} the model calls after its text, or a function of
    the request body returning one; an empty list or None: no call),
    `reply_chunks` (the exact stream pieces, a word may be cut between two), `chunk_delay`,
    `probe_status`, `probe_delay`, `accept_any_model`, and for hostile probes
    `probe_location` (probes answer a redirect there: `probe_status` if it is a 3xx, else 307) and
    `probe_echo_headers` (a failing probe's error message quotes the request's headers) and
    `probe_endless` (probes answer 200 with a JSON body that never ends, as `endless_body` does).
    Every request on any path is kept in `received` (when `record_requests`), so a server that should
    have been left alone (a redirect's target) can show it was. A request asking to continue a partial
    answer (its last message the assistant's) is continued as the dialect's server would
    (`continued_prefix`: FakeOllama's `continues`, FakeOpenAI's `continuation`), and noted in `continued`.
    """

    kind: ClassVar[str] = "base"
    default_models: ClassVar[tuple[str, ...]] = ()
    chat_path: ClassVar[str] = ""
    stream_content_type: ClassVar[str] = ""

    def __init__(
        self,
        models: list[str] | tuple[str, ...] | None = None,
        *,
        port: int = 0,
        host: str = DEFAULT_HOST,
        reply_tokens: int = 5,
        reply_text: str | Callable[[dict[str, Any]], str] | None = None,
        chunk_delay: float = 0.0,
        accept_any_model: bool = False,
        record_requests: bool = True,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self._initial: dict[str, Any] = {
            "models": list(self.default_models if models is None else models),
            "reply_tokens": reply_tokens,
            "reply_text": reply_text,
            "reply_tool_calls": None,
            "reply_chunks": None,
            "chunk_delay": chunk_delay,
            "accept_any_model": accept_any_model,
            "probe_status": None,
            "probe_delay": 0.0,
            "probe_location": None,
            "probe_echo_headers": False,
            "probe_endless": False,
        }
        self.host = host
        self.record_requests = record_requests
        self._port = port
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._lock = threading.Lock()  # guards behaviour and recordings
        self._control = threading.RLock()  # serialises start/stop/up/down
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._web: web.Server | None = None
        self._listener: asyncio.Server | None = None
        self._epoch = 0  # bumped by go_down/stop: connections we kill are not client disconnects
        self._routes: dict[tuple[str, str], Callable[[web.BaseRequest], Any]] = {}
        self._ids = itertools.count(1)
        self._in_flight = 0
        for path, maker in self.probe_routes().items():
            self._routes["GET", path] = self._probe_handler(path, maker)
            self._routes["HEAD", path] = self._routes["GET", path]
        for path in self.call_kinds():
            self._routes["POST", path] = self._chat
        self.reset()

    # ---- knobs and behaviours -------------------------------------------------------------------

    models: list[str]
    reply_tokens: int
    reply_text: str | Callable[[dict[str, Any]], str] | None
    reply_tool_calls: list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]] | None] | None
    reply_chunks: list[str] | None  # the answer's exact stream pieces (a word may be cut between two)
    chunk_delay: float
    accept_any_model: bool
    probe_status: int | None
    probe_delay: float
    probe_location: str | None
    probe_echo_headers: bool
    probe_endless: bool

    def reset(self) -> None:
        """Back to the constructor's knobs, `normal` behaviour, no queued failures, empty recordings."""
        with self._lock:
            for name, value in self._initial.items():
                setattr(self, name, list(value) if isinstance(value, list) else value)
            self._behaviour = NORMAL
            self._queued: deque[Behaviour] = deque()
        self.clear_records()

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    @behaviour.setter
    def behaviour(self, value: str | Behaviour) -> None:
        new = Behaviour.make(value) if isinstance(value, str) else value
        with self._lock:
            self._behaviour = new

    def set_behaviour(self, name: str, **params: Any) -> Behaviour:
        """Answer every following chat request this way (until changed or `reset()`)."""
        self.behaviour = new = Behaviour.make(name, **params)
        return new

    def fail_n_times(self, n: int, name: str = "status", **params: Any) -> None:
        """The next `n` chat requests use behaviour `name` (default: status 500), then the current one."""
        failing = Behaviour.make(name, **params)
        with self._lock:
            self._queued.extend([failing] * n)

    @property
    def queued_failures(self) -> int:
        with self._lock:
            return len(self._queued)

    # ---- recordings -----------------------------------------------------------------------------

    def clear_records(self) -> None:
        with self._lock:
            self._requests: list[RecordedRequest] = []
            self._received: list[RecordedRequest] = []
            self._endless_bytes = 0
            self._probe_count: Counter[str] = Counter()
            self._disconnects: list[Disconnect] = []
            self._completed_streams = 0
            self._completed_requests = 0
            self._chat_count = 0
            self._continued: list[str] = []
            # in_flight is live state, not a record: requests still open keep counting.
            self._max_in_flight = self._in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        """Chat requests received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def continued(self) -> list[str]:
        """The partial answers this fake was asked to continue, and did (oldest first, a snapshot)."""
        with self._lock:
            return list(self._continued)

    @property
    def received(self) -> list[RecordedRequest]:
        """Every request on any path (chat, probes, unknown paths), oldest first (a snapshot)."""
        with self._lock:
            return list(self._received)

    @property
    def endless_bytes(self) -> int:
        """Bytes written so far by the endless behaviours (endless_body, endless_line, flood)."""
        with self._lock:
            return self._endless_bytes

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError(f"fake {self.kind} received no chat request")
            return self._requests[-1]

    @property
    def chat_count(self) -> int:
        """Chat requests received (counted even when `record_requests` is off)."""
        with self._lock:
            return self._chat_count

    @property
    def probe_count(self) -> Counter[str]:
        """GET/HEAD requests per probe path (a snapshot; missing paths read as 0)."""
        with self._lock:
            return Counter(self._probe_count)

    @property
    def disconnects(self) -> int:
        with self._lock:
            return len(self._disconnects)

    @property
    def disconnect_log(self) -> list[Disconnect]:
        with self._lock:
            return list(self._disconnects)

    @property
    def completed_streams(self) -> int:
        with self._lock:
            return self._completed_streams

    @property
    def completed_requests(self) -> int:
        """Chat requests answered in full with 200, streaming or not."""
        with self._lock:
            return self._completed_requests

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        return wait_for(predicate, timeout)

    async def async_wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        return await async_wait_for(predicate, timeout)

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"fake {self.kind} has no port yet: call start() first")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a router upstream's `base_url` should be set to."""
        return self.root_url

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def start(self) -> Self:
        with self._control:
            if self._thread is not None:
                return self
            loop = self._loop_factory()
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name=f"fake-{self.kind}", daemon=True
            )
            self._loop, self._thread = loop, thread
            thread.start()
            try:
                self._call(self._start_async())
            except BaseException:
                self._halt_thread()
                raise
        return self

    def stop(self) -> None:
        """Kill every connection, close the socket and end the thread. Idempotent."""
        with self._control:
            if self._thread is None:
                return
            try:
                self._call(self._down_async())
            finally:
                self._halt_thread()

    def go_down(self) -> None:
        """Stop listening (connects are refused) and reset every open connection, like a crashed server."""
        with self._control:
            self._require_started()
            self._call(self._down_async())

    def come_up(self) -> None:
        """Listen again on the same port."""
        with self._control:
            self._require_started()
            if self._listener is None:
                self._call(self._listen())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.root_url if self._port else "not started"
        return f"<{type(self).__name__} {where} {'up' if self.is_up else 'down'} {self.behaviour.name}>"

    def _require_started(self) -> None:
        if self._thread is None:
            raise RuntimeError(f"fake {self.kind} is not started")

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("fake control methods cannot be called from the fake's own loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _halt_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
        self._loop = self._thread = None
        self._web = None

    async def _start_async(self) -> None:
        # handler_cancellation: a handler sleeping in a stall or a delay is cancelled the moment the
        # client's connection is lost, which is both how stalls end and how disconnects are detected.
        self._web = web.Server(self._dispatch, handler_cancellation=True, access_log=None)
        await self._listen()

    async def _listen(self) -> None:
        assert self._web is not None
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._listener = await loop.create_server(
                    self._web, self.host, self._port, reuse_address=True, backlog=1024
                )
                break
            except OSError as exc:
                # The old socket of this very port can linger a moment after go_down(); retry briefly.
                if self._port == 0 or exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
        self._port = self._listener.sockets[0].getsockname()[1]

    async def _down_async(self) -> None:
        self._epoch += 1
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._web is not None:
            for handler in self._web.connections:
                reset_transport(handler.transport)
        await asyncio.sleep(0)  # let connection_lost callbacks run before we report "down"

    # ---- request handling -----------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.record_requests:
            raw = await request.read()  # cached by aiohttp: the chat handler reads it again for free
            headers = {k.lower(): v for k, v in request.headers.items()}
            seen = RecordedRequest(request.method, request.path, headers, None, raw, time.monotonic())
            with self._lock:
                self._received.append(seen)
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            if any(path == request.path for _, path in self._routes):
                return self.error_response(405, f"method {request.method} not allowed on {request.path}")
            return self.not_found(request)
        return await handler(request)

    def _probe_handler(self, path: str, maker: ProbeMaker) -> Callable[[web.BaseRequest], Any]:
        async def probe(request: web.BaseRequest) -> web.StreamResponse:
            with self._lock:
                self._probe_count[path] += 1
            if self.probe_delay:
                await asyncio.sleep(self.probe_delay)
            denied = self.authorize(request)
            if denied is not None:
                return denied
            status = self.probe_status
            location = self.probe_location
            if location is not None:
                code = status if status is not None and 300 <= status < 400 else 307
                return web.Response(status=code, headers={"Location": location})
            if self.probe_endless:
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                await response.prepare(request)
                return await self._endless(response, b'{"models":"', b"a", Behaviour.make("endless_body"))
            if status is not None and status != 200:
                message = f"fake probe failure on {path}"
                if self.probe_echo_headers:
                    message += f"; your request headers were: {quote_headers(request)}"
                return self.error_response(status, message)
            return maker()

        return probe

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._chat_count += 1
            if self.record_requests:
                headers = {k.lower(): v for k, v in request.headers.items()}
                self._requests.append(
                    RecordedRequest(request.method, request.path, headers, body, raw, time.monotonic())
                )
            behaviour = self._queued.popleft() if self._queued else self._behaviour
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        epoch = self._epoch
        progress = _Progress()
        stream = False
        try:
            denied = self.authorize(request)
            if denied is not None:
                return denied
            if behaviour.name in _BEFORE_MODEL_CHECK:
                return self._fail_at_once(request, behaviour, progress)
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            reply = self.parse_call(self.call_kinds()[request.path], body)
            stream = reply.stream
            if not self.accept_any_model and reply.model not in self.models:
                return self.model_not_found(reply.model)
            self.on_chat_accepted(reply)
            if reply.stream:
                return await self._answer_stream(request, reply, behaviour, progress)
            return await self._answer_full(request, reply, behaviour, progress)
        except BadRequest as exc:
            return self.error_response(400, str(exc))
        except asyncio.CancelledError:
            # handler_cancellation: the connection was lost while we awaited something
            self._record_disconnect(request, stream, progress, epoch)
            raise
        except ConnectionResetError:
            # lost while we wrote; returning (not raising) keeps aiohttp from logging a traceback
            self._record_disconnect(request, stream, progress, epoch)
            return web.Response()
        finally:
            with self._lock:
                self._in_flight -= 1

    def _record_disconnect(
        self, request: web.BaseRequest, stream: bool, progress: _Progress, epoch: int
    ) -> None:
        if progress.reset_by_us or epoch != self._epoch:
            return  # the fake cut the connection itself (a behaviour, go_down or stop)
        with self._lock:
            self._disconnects.append(Disconnect(request.path, stream, progress.chunks, time.monotonic()))

    def _fail_at_once(
        self, request: web.BaseRequest, b: Behaviour, progress: _Progress
    ) -> web.StreamResponse:
        if b.name == "reset_before_response":
            progress.reset_by_us = True
            reset_transport(request.transport)
            return web.Response()  # never sent: aiohttp drops it on the closed transport
        if b.name == "html":
            page = b["body"] if b["body"] is not None else DEFAULT_HTML.format(code=b["code"])
            return web.Response(status=b["code"], text=page, content_type="text/html")
        if b.name == "garbage":
            return web.Response(status=b["code"], body=_as_bytes(b["body"]), content_type=b["content_type"])
        if b.name == "redirect":
            return web.Response(status=b["code"], headers={"Location": b["location"]})
        if b.name == "echo_headers":
            return self.error_response(b["code"], f"your request headers were: {quote_headers(request)}")
        # status
        headers = dict(b["headers"] or {})
        if b["retry_after"] is not None:
            headers["Retry-After"] = str(b["retry_after"])
        body = b["body"]
        if body is None:
            response = self.error_response(b["code"], f"fake upstream answered {b['code']}")
            response.headers.update(headers)
            return response
        if isinstance(body, dict | list):
            return web.Response(
                status=b["code"],
                body=json.dumps(body).encode(),
                headers=headers,
                content_type="application/json",
            )
        return web.Response(
            status=b["code"],
            body=_as_bytes(body),
            headers=headers,
            content_type=b["content_type"] or "text/plain",
        )

    async def _answer_stream(
        self, request: web.BaseRequest, reply: Reply, b: Behaviour, progress: _Progress
    ) -> web.StreamResponse:
        frames = self.stream_frames(reply)
        if b.name == "slow_first_token" and not b["headers_first"]:
            await asyncio.sleep(b["seconds"])
        response = web.StreamResponse(
            headers={
                "Content-Type": self.stream_content_type,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)  # sends the headers now
        if b.name == "slow_first_token" and b["headers_first"]:
            await asyncio.sleep(b["seconds"])
        if b.name == "endless_body":
            return await self._endless(response, self.endless_line_head(), b"a", b)
        for frame in frames.head:
            await response.write(frame)
        content = frames.content
        fault_at = min(b["after"], len(content)) if b.name in _MID_STREAM | _ENDLESS else -1
        delay = self.chunk_delay
        for i in range(len(content) + 1):
            if i == fault_at:
                if b.params.get("pause"):
                    await asyncio.sleep(b["pause"])
                if b.name == "malformed_line":
                    line = self.malformed_frame() if b["line"] is None else _as_bytes(b["line"])
                    await response.write(line)
                elif b.name == "stall_mid_stream":
                    await asyncio.sleep(b["seconds"])
                elif b.name == "error_line":
                    await response.write_eof(self.error_frame(b["message"]))
                    return response
                elif b.name == "endless_line":
                    return await self._endless(response, self.endless_line_head(), b"a", b)
                elif b.name == "flood":
                    return await self._endless(response, b"", self.flood_frame(), b)
                else:  # reset_mid_stream
                    progress.reset_by_us = True
                    reset_transport(request.transport)
                    return response
            if i == len(content):
                break
            if delay and i:
                await asyncio.sleep(delay)
            await response.write(content[i])
            progress.chunks += 1
        await response.write_eof(frames.tail)
        with self._lock:
            self._completed_streams += 1
            self._completed_requests += 1
        return response

    async def _answer_full(
        self, request: web.BaseRequest, reply: Reply, b: Behaviour, progress: _Progress
    ) -> web.StreamResponse:
        if b.name == "error_line":
            return self.error_response(500, b["message"])
        if b.name in _ENDLESS:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            if b.name == "flood":
                return await self._endless(response, b"", b" \n", b)
            return await self._endless(response, b'{"padding":"', b"a", b)
        body = self.full_body(reply)
        if b.name == "slow_first_token":
            if b["headers_first"]:
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                response.content_length = len(body)
                await response.prepare(request)
                await asyncio.sleep(b["seconds"])
                await response.write_eof(body)
                self._count_completed()
                return response
            await asyncio.sleep(b["seconds"])
        if self.chunk_delay and reply.pieces:  # the time it would take to generate the answer
            await asyncio.sleep(self.chunk_delay * len(reply.pieces))
        half = len(body) // 2
        if b.name == "malformed_line":
            return web.Response(body=body[:half], content_type="application/json")
        if b.name in ("reset_mid_stream", "stall_mid_stream"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[:half])
            if b.name == "reset_mid_stream":
                progress.reset_by_us = True
                reset_transport(request.transport)
                return response
            await asyncio.sleep(b["seconds"])
            await response.write_eof(body[half:])
            self._count_completed()
            return response
        self._count_completed()
        return web.Response(body=body, content_type="application/json")

    async def _endless(
        self, response: web.StreamResponse, head: bytes, filler: bytes, b: Behaviour
    ) -> web.StreamResponse:
        """Write `head`, then `filler` over and over until the client leaves (or `max_bytes`)."""
        size = max(1, b["chunk_bytes"] // len(filler))
        piece = filler * size
        await response.write(head)
        sent = len(head)
        while sent < b["max_bytes"]:
            await response.write(piece)  # waits while the client does not read: no buffering here
            sent += len(piece)
            with self._lock:
                self._endless_bytes += len(piece)
        await response.write_eof()
        return response

    def _count_completed(self) -> None:
        with self._lock:
            self._completed_requests += 1

    def reply_pieces(self, body: dict[str, Any], limit: int | None) -> tuple[tuple[str, ...], str]:
        """The answer's chunks after the token limit, and the finish reason.

        A request whose last message is the assistant's, with a text P that begins the scripted answer T,
        is continued when the fake continues such requests (`continued_prefix`): the answer is then
        T[len(P):], deterministically, as a model continuing its own unfinished message would write it.
        """
        text = self.reply_text
        if self.reply_chunks is not None:
            pieces = tuple(self.reply_chunks)
        elif text is None:
            pieces = default_pieces(self.reply_tokens)
        else:
            pieces = split_words(text(body) if callable(text) else text)
        prefix = self.continued_prefix(body)
        if prefix:
            whole = "".join(pieces)
            if whole.startswith(prefix):
                pieces = split_words(whole[len(prefix) :])
                with self._lock:
                    self._continued.append(prefix)
        if limit is not None and limit < len(pieces):
            return pieces[: max(limit, 0)], "length"
        return pieces, "stop"

    def reply_calls(self, body: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The tool calls the answer makes (the `reply_tool_calls` knob), as (name, arguments) pairs."""
        calls = self.reply_tool_calls
        if callable(calls):
            calls = calls(body)
        return tuple((str(c["name"]), dict(c.get("arguments") or {})) for c in calls or ())

    def next_id(self) -> int:
        return next(self._ids)

    # ---- the dialect ----------------------------------------------------------------------------

    def probe_routes(self) -> dict[str, ProbeMaker]:
        raise NotImplementedError

    def parse_chat(self, body: dict[str, Any]) -> Reply:
        """Validate the request (BadRequest if invalid) and decide the reply."""
        raise NotImplementedError

    def call_kinds(self) -> dict[str, str]:
        """POST paths answered like chat (same behaviours, recordings and failures), and their kind."""
        return {self.chat_path: "chat"}

    def parse_call(self, kind: str, body: dict[str, Any]) -> Reply:
        """Validate a request of any kind (BadRequest if invalid) and decide the reply."""
        return self.parse_chat(body)

    def on_chat_accepted(self, reply: Reply) -> None:
        """Called once a chat request passed the model check."""

    def continued_prefix(self, body: dict[str, Any]) -> str | None:
        """The partial answer a request asks this fake to continue (the text of its final assistant
        message), when the fake continues requests like it; None otherwise (the default: it does not)."""
        return None

    def authorize(self, request: web.BaseRequest) -> web.StreamResponse | None:
        return None

    def error_response(self, status: int, message: str) -> web.Response:
        raise NotImplementedError

    def not_found(self, request: web.BaseRequest) -> web.Response:
        return self.error_response(404, f"no route for {request.method} {request.path}")

    def model_not_found(self, model: str) -> web.Response:
        raise NotImplementedError

    def stream_frames(self, reply: Reply) -> Frames:
        raise NotImplementedError

    def full_body(self, reply: Reply) -> bytes:
        raise NotImplementedError

    def error_frame(self, message: str) -> bytes:
        raise NotImplementedError

    def malformed_frame(self) -> bytes:
        raise NotImplementedError

    def endless_line_head(self) -> bytes:
        """The start of a stream line that `endless_line` then never ends."""
        raise NotImplementedError

    def flood_frame(self) -> bytes:
        """A frame that carries nothing (an empty line, an SSE comment), repeated by `flood`."""
        raise NotImplementedError


def final_assistant_text(body: dict[str, Any]) -> str | None:
    """The text of a chat body's last message when that message is the assistant's, else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return None
    content = last.get("content")
    return content if isinstance(content, str) else None


def quote_headers(request: web.BaseRequest) -> str:
    """Every request header as `Name: value`, as an upstream that echoes them would write them."""
    return "; ".join(f"{name}: {value}" for name, value in request.headers.items())


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic embedding of `text`: multiples of 1/128 in [-1, 1), exact in float32 (so a base64
    round trip gives the very same numbers)."""
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [(byte - 128) / 128 for byte in digest[:dimensions]]


DEFAULT_DIMENSIONS = 8


def count_words(value: Any) -> int:
    """Prompt tokens of a text input: words of a string or of each string, or the length of token arrays."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) if not isinstance(item, int) else 1 for item in value)
    return 0


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
