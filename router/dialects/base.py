"""The seam between a client's dialect and the router's one internal model (OpenAI Chat Completions).

Every front door (`/v1/chat/completions`, `/v1/messages`, `/api/chat`, ...) is a `ClientDialect`: it
translates the client's request into the internal model, and the internal answer back into the client's
wire format. Everything between the two (route resolution, auth, sessions, dispatch, retries, fallbacks,
limits, the streaming relay's heartbeats, stall timeouts and cancel-on-disconnect) is shared, so it holds
for every dialect alike and is written once.

The internal model is what the upstream adapters speak:

- a request is an OpenAI chat body (`Inbound.body`, a dict sent on to the upstream) plus the typed
  `router.protocol.openai_chat.ChatRequest` the router acts on (`stream`, max tokens, `model`,
  `session_id`, ...); the two must agree (a dialect that builds `body` builds `request` from it, e.g. with
  `router.protocol.openai_chat.parse_chat_body`);
- a whole answer is `chat.completion` JSON bytes;
- a stream is a sequence of `chat.completion.chunk` JSON payloads (bytes, no SSE framing), as
  `EventStream.read()` yields them in batches.

The interface (final):

```python
@dataclass(slots=True)
class Inbound:                      # a client request translated to the internal model
    request: ChatRequest            # typed fields the router acts on
    body: dict[str, Any]            # the internal OpenAI chat body sent on to upstreams
    context: Any = None             # what the dialect needs to translate the answer back

class StreamEncoder(Protocol):      # one per streamed answer (it may keep state: block indexes, usage)
    media_type: str                 # "text/event-stream", "application/x-ndjson"
    heartbeat: bytes                # sent while the model is silent
    def start(self) -> bytes        # before the first chunk (may be b"")
    def chunks(self, payloads: list[bytes]) -> bytes  # internal chunk payloads -> dialect bytes (or b"")
    def end(self) -> bytes          # the clean end ([DONE], message_stop, a done:true line)
    def error(self, reply: ErrorReply) -> bytes  # the last event of a stream that failed once started

class ClientDialect(ABC):
    name: str                       # "openai_chat", "anthropic_messages", ... (RequestRecord.dialect)
    errors: ErrorDialect            # router.errors.ErrorDialect: error body shape (+ stream event)
    def parse(self, raw: bytes, headers: Headers) -> Inbound     # InvalidRequest(param=...) on bad input
    def answer(self, whole: bytes, inbound: Inbound) -> bytes    # chat.completion JSON -> dialect body
    def stream(self, inbound: Inbound) -> StreamEncoder

@dataclass(frozen=True, slots=True)
class Door:                         # one front door: a dialect and how its requests find their route
    dialect: ClientDialect
    resolve: Resolve                # Callable[[ChatRequest], Route]: fixed, or by `model` (names, aliases)
```

How the pieces are used (the contract a dialect can rely on):

- `router.api.chat.handle_chat(request, services, door)`: authenticate (Bearer or `x-api-key`) ->
  `door.dialect.parse(body, headers)` -> `door.resolve(inbound.request)` -> authorize -> sessions (they
  prepend history to `inbound.body["messages"]`) -> dispatch -> `dialect.answer(...)` (whole) or the
  relay with `dialect.stream(inbound)` (streamed). Errors raised anywhere, parse included, are written
  with `router.errors.encode_error(error, redact, dialect.errors)`, so a dialect raises `RouterError`s
  (`InvalidRequest(..., param=...)`, `NotFound`, ...) and never writes an error body itself.
- The streaming relay (`router.streaming.relay`) writes `encoder.start()` and `encoder.chunks(first)`
  as its first write, then `encoder.chunks(batch)` per batch (empty results are not written),
  `encoder.heartbeat` while the model is silent, and exactly one of `encoder.end()` (the upstream ended
  cleanly) or `encoder.error(reply)` (it failed, stalled or a bug happened after the status was sent).
  The HTTP status and headers are sent before `start()`; a failure before the first chunk is a normal
  error response in the dialect's shape (and may be retried or fall back, like any other).
- `answer` and `chunks` see only what the upstream adapter produced (valid chat JSON); they may still
  raise on a malformed payload, which the relay turns into the final error event.
- The fast path (`router.api.fastpath.ChatFastPath`) serves a `POST` to any path of its door table
  (`router.app.front_doors`: path -> `Door`); each door is also a Litestar handler (so it is in the
  OpenAPI document and serves the requests the fast path declines). A new front door is one entry in
  `front_doors` and one handler in `router.app` (see `front_door_handler`).
- Errors the framework raises on a door's path (413, 405, ...) are written in that door's error dialect
  (`router.api.errors.exception_handlers` gets `router.app.error_dialects(doors)`; a dialect's paths that
  are not chat doors, e.g. `/v1/messages/count_tokens`, are one more line there).
- Helpers for parsers (`router.protocol.openai_chat`): `decode_json_object(raw, what)` (the body as a
  JSON object, 400s worded like the chat door's), `convert_body(body, Struct)` (typed check, 400 naming
  the field as `param`), `parse_chat_body(body)` (the `ChatRequest` of an internal body you built).
  `router.dialects.sse` has the SSE framing (`frame`, `event`, `KEEPALIVE`, `DONE`).
- `RequestRecord.dialect` is set from `dialect.name` for every request (the request log's `dialect`).
- Route resolution by `model` (`router.app._by_model`, `RouteTable.by_model`) accepts a route's name,
  its model or one of its `aliases:`; a 404 `NotFound(param="model")` otherwise.

`router.dialects.anthropic_messages.ANTHROPIC_MESSAGES` is the first translating dialect (a stateful
encoder, `Inbound.context` carrying what the answer needs); read it as the worked example.

`router.dialects.openai_chat.OPENAI_CHAT` is the identity dialect: the body is parsed exactly as before,
the answer bytes go out untouched, and stream chunks are only framed (`data: ...\\n\\n`), never decoded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from router.errors import ErrorDialect, ErrorReply
from router.protocol.openai_chat import ChatRequest

if TYPE_CHECKING:
    from router.table import Route

Headers = Iterable[tuple[bytes, bytes]]
"""The request's ASGI headers: lower-case names, raw values."""

Resolve = Callable[[ChatRequest], "Route"]
"""How a request finds its route: fixed (a route's own path) or by `model` (names, models, aliases)."""


@dataclass(slots=True)
class Inbound:
    """A client request translated to the internal model (see the module docstring)."""

    request: ChatRequest
    body: dict[str, Any]
    context: Any = None


class Sessions(Protocol):
    """The session store as a dialect sees it: the same two calls as the handler's (`router.sessions`).

    Declared here, not imported from the API layer, so that dialects stay below it.
    """

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages of a session (empty for an unknown one); RouterError if not the owner's."""
        ...

    async def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        """Append what the client sent and what the model answered (a shared store may raise 503)."""
        ...


class StreamEncoder(Protocol):
    """Writes one streamed answer in a client's dialect; one instance per answer (it may keep state)."""

    media_type: str
    heartbeat: bytes

    def start(self) -> bytes:
        """What goes before the first chunk (may be b"")."""
        ...

    def chunks(self, payloads: list[bytes]) -> bytes:
        """Internal `chat.completion.chunk` payloads -> the dialect's bytes (may be b"")."""
        ...

    def end(self) -> bytes:
        """The clean end of the stream."""
        ...

    def error(self, reply: ErrorReply) -> bytes:
        """The last event of a stream that failed after it started (`reply` is in `errors`' shape)."""
        ...


class ClientDialect(ABC):
    """A client's wire format, translated to and from the internal model."""

    name: str
    errors: ErrorDialect
    # The call kind the dialect's requests are (docs/dialects/embeddings_and_completions.md): "chat",
    # "completions" (text, on chat routes) or "embeddings" (on `kind: embeddings` routes). It picks the
    # adapter call the handler dispatches, and a route of the other kind answers 400.
    kind: str = "chat"

    @abstractmethod
    def parse(self, raw: bytes, headers: Headers) -> Inbound:
        """The request as the internal model; InvalidRequest (naming `param`) on bad input."""

    @abstractmethod
    def answer(self, whole: bytes, inbound: Inbound) -> bytes:
        """A whole `chat.completion` (JSON bytes) as the dialect's response body (JSON)."""

    @abstractmethod
    def stream(self, inbound: Inbound) -> StreamEncoder:
        """The encoder of one streamed answer to `inbound`."""

    async def join_conversation(self, inbound: Inbound, sessions: Sessions | None, owner: str | None) -> None:
        """Load a conversation the router stored for this client, once the caller is known and allowed.

        For dialects whose clients name a stored conversation of their own (Responses'
        `previous_response_id`): they read it from `sessions` (owner-bound) into `inbound.body` and may
        arrange for the answer to be stored. The handler calls it only when `inbound.context` is set;
        the default does nothing.
        """
        return None

    async def settle(self, inbound: Inbound) -> None:
        """Wait until what `answer` arranged to store is stored (a whole answer is sent only then, so the
        client's next request, on any process, finds it). The default has nothing to wait for."""
        return None


@dataclass(frozen=True, slots=True)
class Door:
    """One front door: the dialect its clients speak and how their requests find a route."""

    dialect: ClientDialect
    resolve: Resolve
