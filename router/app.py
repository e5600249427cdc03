"""The Litestar application for one route table, built in one factory from typed inputs.

One handler for all the table's entries (a route is found by a dictionary lookup of its path, so the app
is the same size for 1 or 10,000 routes), the OpenAI-compatible `/v1` doors, and the probes. Handlers are
thin closures over the prepared table: they parse the body and call domain code. A reload builds a new app
for the new table; `router.runtime` swaps it in atomically.

The OpenAPI document lists every route (those entries made from the table when first asked for), model
and upstream, so it is for operators: it is served as JSON only (`/schema`, `/schema/openapi.json`) and
needs the admin key whenever keys are configured. Litestar's documentation pages (Swagger, Redoc,
Elements...) are not served: they load their scripts from a public CDN, and on this origin the chat page
keeps the user's key in the browser.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from litestar import Litestar, Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.handlers import route as handler_of
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router import __version__
from router.api.chat import ChatServices, handle_chat
from router.api.errors import exception_handlers
from router.api.ollama import DOORS_DOC, OLLAMA_LISTING_PATHS, ollama_doors, ollama_listing_handlers
from router.api.web import web_handlers
from router.config.reserved import (
    ANTHROPIC_COUNT_TOKENS_PATH,
    ANTHROPIC_MESSAGES_PATH,
    HEALTHZ_PATH,
    OPENAI_CHAT_OPERATION,
    OPENAI_CHAT_PATH,
    OPENAI_COMPLETIONS_PATH,
    OPENAI_EMBEDDINGS_PATH,
    OPENAI_MODELS_PATH,
    OPENAI_RESPONSES_PATH,
    OPENAPI_PATH,
    READYZ_PATH,
    RESERVED_ROUTE_NAMES,
    ROUTE_OPERATION_PREFIX,
    reserved_owner,
)
from router.dialects.anthropic_messages import (
    ANTHROPIC_ERRORS,
    ANTHROPIC_MESSAGES,
    MessagesRequest,
    count_tokens,
)
from router.dialects.base import Door, Resolve
from router.dialects.ollama_api import OLLAMA_ERRORS
from router.dialects.openai_chat import OPENAI_CHAT
from router.dialects.openai_completions import OPENAI_COMPLETIONS
from router.dialects.openai_embeddings import OPENAI_EMBEDDINGS
from router.dialects.openai_responses import OPENAI_RESPONSES, ResponsesRequest
from router.echo import quoted
from router.errors import ErrorDialect, InvalidRequest, NotFound, Redact
from router.protocol.openai_chat import ChatRequest
from router.protocol.openai_kinds import CompletionRequest, EmbeddingsRequest
from router.security import Access
from router.security.http import cors_config
from router.table import Route, RouteTable

_CHAT_RESPONSES_DOC = (
    "An OpenAI `chat.completion` object, or a `text/event-stream` of chunks when `stream` is true."
)


@dataclass
class ChatOperation(Operation):
    """OpenAPI operation for chat handlers: they read their body themselves, so document it here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=_request_schema())},  # type: ignore[arg-type]
            required=True,
            description=_CHAT_REQUEST_DOC,
        )


@cache
def _request_schema(of: type = ChatRequest) -> dict[str, Any]:
    """The JSON Schema of a request type, inlined (Litestar rebuilds `components`, dropping extra ones).

    A type that contains itself (a content block holding blocks) is inlined once; deeper, any object.
    """
    schema = msgspec.json.schema(of)
    definitions = schema.pop("$defs", {})

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in seen:
                    return {"type": "object"}
                return inline(definitions[name], seen | {name})
            return {key: inline(value, seen) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        return node

    return inline(schema, frozenset())  # type: ignore[no-any-return]


def inlined_schema(request_type: type) -> dict[str, Any]:
    """The JSON Schema of a request type, inlined: the documented body of a front door's handler."""
    return _request_schema(request_type)


def _json(data: Any, status: int = 200) -> ASGIResponse:
    return ASGIResponse(body=msgspec.json.encode(data), media_type="application/json", status_code=status)


def front_doors(table: RouteTable) -> dict[str, Door]:
    """Every chat path with its door: the client dialect spoken there and how a request finds its route
    (fixed for a route's own path, by `model` on the shared doors). Shared by the app's handlers and the
    fast path, so both answer alike. A new front door is one entry here (and its handler in the app)."""
    doors: dict[str, Door] = {route.path: Door(OPENAI_CHAT, _fixed(route)) for route in table.routes}
    by_model = _by_model(table)
    doors[OPENAI_CHAT_PATH] = Door(OPENAI_CHAT, by_model)
    doors[OPENAI_RESPONSES_PATH] = Door(OPENAI_RESPONSES, by_model)
    # The other call kinds (docs/dialects/embeddings_and_completions.md); an embeddings route's own path
    # speaks embeddings.
    doors[OPENAI_EMBEDDINGS_PATH] = Door(OPENAI_EMBEDDINGS, by_model)
    doors[OPENAI_COMPLETIONS_PATH] = Door(OPENAI_COMPLETIONS, by_model)
    for route in table.routes:
        if route.config.kind == "embeddings":
            doors[route.path] = Door(OPENAI_EMBEDDINGS, doors[route.path].resolve)
    doors.update(ollama_doors(table))  # /api/chat, /api/generate, /api/embed, /api/embeddings
    doors[ANTHROPIC_MESSAGES_PATH] = Door(ANTHROPIC_MESSAGES, by_model)
    return doors


def _fixed(route: Route) -> Resolve:
    def this_route(_: ChatRequest) -> Route:
        return route

    return this_route


def _by_model(table: RouteTable) -> Resolve:
    def by_model(parsed: ChatRequest) -> Route:
        if not parsed.model:
            raise InvalidRequest(
                "`model` is required here: give a route name; GET /v1/models lists them", param="model"
            )
        route = table.by_model.get(parsed.model)
        if route is None:
            raise NotFound(
                f"no route or model named {quoted(parsed.model)}; GET /v1/models lists them", param="model"
            )
        return route

    return by_model


TABLE_PATH = "/{route_path:path}"
"""The one Litestar path serving every table route: a route is a dictionary entry here, not a handler.

Litestar rebuilds a router-wide map at each handler it registers, so one handler per route made building
the app grow with the square of the table (10,000 routes did not start within two minutes). The paths the
router serves itself are static and Litestar tries those first, so this path only sees the others."""

_ROUTE_METHODS = "OPTIONS, POST"


def table_handler(table: RouteTable, doors: dict[str, Door], services: ChatServices) -> HTTPRouteHandler:
    """Every table route's POST handler in one: the route is found by a dictionary lookup of the path.

    Serves what the fast path declines (`router.api.fastpath`), or every request when the app runs without
    the runtime in front. Any other path reaching it is the 404 it was before; another method on a route
    path is the 405 Litestar gave (OPTIONS its 204).
    It is not in Litestar's OpenAPI document: `TableDocument` adds each route's entry from the table.
    """
    served = {entry.path: doors[entry.path] for entry in table.routes}

    async def table_route(request: Request[Any, Any, Any]) -> ASGIApp:
        door = served.get(request.scope["path"])
        if door is None:
            raise NotFoundException()
        method = request.scope["method"]
        if method == "POST":
            return await handle_chat(request, services, door)
        if method == "OPTIONS":
            return ASGIResponse(body=b"", status_code=204, headers={"Allow": _ROUTE_METHODS})
        raise MethodNotAllowedException(headers={"Allow": _ROUTE_METHODS})

    return handler_of(
        TABLE_PATH,
        http_method=list(HttpMethod),
        name="table-routes",
        include_in_schema=False,
        status_code=200,
    )(table_route)


_CHAT_REQUEST_DOC = "An OpenAI Chat Completions request; unknown fields reach OpenAI-compatible servers."
_EMBEDDINGS_REQUEST_DOC = "An OpenAI embeddings request; unknown fields reach OpenAI-compatible servers."
_EMBEDDINGS_RESPONSES_DOC = (
    "An OpenAI embeddings list (float vectors, or base64 when `encoding_format` asks)."
)
_ROUTE_BODIES = {
    "chat": ("RouteChatRequest", ChatRequest, _CHAT_REQUEST_DOC),
    "embeddings": ("RouteEmbeddingsRequest", EmbeddingsRequest, _EMBEDDINGS_REQUEST_DOC),
}
"""Each route kind's request body: its schema is in the document's `components` once, under this name."""
_OK = {
    "200": {
        "description": "Request fulfilled, document follows",
        "headers": {},
        "content": {"application/json": {"schema": {}}},
    }
}


def route_paths(table: RouteTable) -> dict[str, Any]:
    """The OpenAPI path items of the table's routes: one POST each, its body a reference to its kind's
    request schema (a 10,000-route table would otherwise repeat a 4 KB schema 10,000 times)."""
    bodies = {
        kind: {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            "required": True,
            "description": description,
        }
        for kind, (name, _, description) in _ROUTE_BODIES.items()
    }
    paths: dict[str, Any] = {}
    for entry in table.routes:
        embeddings = entry.config.kind == "embeddings"
        upstreams = ", ".join(r.upstream.name for r in entry.replicas)
        paths[entry.path] = {
            "post": {
                "tags": ["routes"],
                "summary": f"Embeddings from {entry.model}" if embeddings else f"Chat with {entry.model}",
                "description": f"Route `{entry.name}`: model `{entry.model}` on {upstreams}. "
                + (_EMBEDDINGS_RESPONSES_DOC if embeddings else _CHAT_RESPONSES_DOC),
                "operationId": ROUTE_OPERATION_PREFIX + entry.name,
                "requestBody": bodies[entry.config.kind],
                "responses": _OK,
                "deprecated": False,
            }
        }
    return paths


class TableDocument(JsonRenderPlugin):
    """The OpenAPI document as JSON: Litestar's, of the router's own handlers, and the table's routes.

    Made at the first request for it and kept: the app (so this plugin) belongs to one table version, and
    the routes' entries cost nothing until an operator asks for the document.
    """

    def __init__(self, table: RouteTable) -> None:
        super().__init__()
        self._table = table
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """Litestar's document with the table's routes first, in the table's order, and their schemas."""
        if self._rendered is None:
            components = dict(openapi_schema.get("components") or {})
            schemas = dict(components.get("schemas") or {})
            for name, request_type, _ in _ROUTE_BODIES.values():
                schemas[name] = _request_schema(request_type)
            components["schemas"] = schemas
            paths = {**route_paths(self._table), **openapi_schema.get("paths", {})}
            document = {**openapi_schema, "paths": paths, "components": components}
            self._rendered = self.render_json(request, document)
        return self._rendered


def kinds_handlers(doors: dict[str, Door], services: ChatServices) -> list[HTTPRouteHandler]:
    """`/v1/embeddings` and `/v1/completions`: the other call kinds, a route chosen by `model`."""
    return [
        front_door_handler(
            OPENAI_EMBEDDINGS_PATH,
            doors[OPENAI_EMBEDDINGS_PATH],
            services,
            operation_id="embeddings",
            summary="OpenAI-compatible embeddings; `model` names an embeddings route",
            tag="openai",
            request_schema=_request_schema(EmbeddingsRequest),
            request_description=_EMBEDDINGS_REQUEST_DOC,
        ),
        front_door_handler(
            OPENAI_COMPLETIONS_PATH,
            doors[OPENAI_COMPLETIONS_PATH],
            services,
            operation_id="completions",
            summary="OpenAI-compatible text completions (with `suffix`); `model` names a chat route",
            tag="openai",
            request_schema=_request_schema(CompletionRequest),
            request_description="An OpenAI (legacy) completions request; unknown fields reach "
            "OpenAI-compatible servers.",
        ),
    ]


def ollama_door_handlers(doors: dict[str, Door], services: ChatServices) -> list[HTTPRouteHandler]:
    """The Ollama doors (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`) as handlers: in the
    OpenAPI document, and serving what the fast path leaves to the app."""
    return [
        front_door_handler(
            path,
            doors[path],
            services,
            operation_id=operation_id,
            summary=summary,
            tag="ollama",
            request_schema=inlined_schema(body),
            request_description="An Ollama API request (docs/dialects/ollama_api.md).",
        )
        for path, operation_id, summary, body in DOORS_DOC
    ]


def openai_handlers(table: RouteTable, services: ChatServices, door: Door) -> list[HTTPRouteHandler]:
    """`/v1/chat/completions` (a route chosen by `model`) and `/v1/models`, for unmodified OpenAI clients."""
    created = int(time.time())
    models = {
        "object": "list",
        "data": [
            {
                "id": r.name,
                "object": "model",
                "created": created,
                "owned_by": "router",
                "root": r.model,
                "route": r.path,
                "upstreams": [x.upstream.name for x in r.replicas],
            }
            for r in table.routes
        ],
    }
    models_body = msgspec.json.encode(models)
    visible: dict[frozenset[str], bytes] = {}  # the listing for each restricted key's set of routes

    def models_for(allowed: frozenset[str]) -> bytes:
        body = visible.get(allowed)
        if body is None:
            data = [m for m in models["data"] if m["route"] in allowed]  # type: ignore[index, operator]
            body = visible[allowed] = msgspec.json.encode({"object": "list", "data": data})
        return body

    @post(
        OPENAI_CHAT_PATH,
        operation_id=OPENAI_CHAT_OPERATION,
        tags=["openai"],
        operation_class=ChatOperation,
        summary="OpenAI-compatible chat; `model` names a route (its name or its model)",
        status_code=200,
    )
    async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
        return await handle_chat(request, services, door)

    @get(OPENAI_MODELS_PATH, operation_id="list_models", tags=["openai"], summary="The routes as models")
    async def list_models(request: Request[Any, Any, Any]) -> ASGIApp:
        access = services.access
        allowed = access.allowed_routes(access.authenticate(request.scope["headers"]))
        body = models_body if allowed is None else models_for(allowed)
        return ASGIResponse(body=body, media_type="application/json")

    return [chat_completions, list_models]


def front_door_handler(
    path: str,
    door: Door,
    services: ChatServices,
    *,
    operation_id: str,
    summary: str,
    tag: str,
    request_schema: dict[str, Any] | None = None,
    request_description: str = "",
) -> HTTPRouteHandler:
    """The Litestar handler of one front door: it is in the OpenAPI document, and serves the requests the
    fast path declines (or all of them when the app runs without the runtime in front). `request_schema`
    documents its body."""

    async def front_door(request: Request[Any, Any, Any]) -> ASGIApp:
        return await handle_chat(request, services, door)

    operation: type[Operation] = ChatOperation
    if request_schema is not None:
        schema, description = request_schema, request_description

        @dataclass
        class DoorOperation(Operation):
            def __post_init__(self) -> None:
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=schema)},  # type: ignore[arg-type]
                    required=True,
                    description=description,
                )

        operation = DoorOperation
    return post(
        path,
        operation_id=operation_id,
        summary=summary,
        tags=[tag],
        operation_class=operation,
        status_code=200,
    )(front_door)


def responses_handler(services: ChatServices, door: Door) -> HTTPRouteHandler:
    """`POST /v1/responses`, OpenAI's Responses API (docs/dialects/openai_responses.md)."""
    return front_door_handler(
        OPENAI_RESPONSES_PATH,
        door,
        services,
        operation_id="responses",
        summary="OpenAI Responses: `model` names a route",
        tag="openai",
        request_schema=_request_schema(ResponsesRequest),
        request_description="An OpenAI Responses request; fields with no meaning here are accepted, ignored.",
    )


def anthropic_handlers(services: ChatServices, door: Door) -> list[HTTPRouteHandler]:
    """`/v1/messages` (Anthropic's Messages API; the route chosen by `model`) and its token counter."""
    messages = front_door_handler(
        ANTHROPIC_MESSAGES_PATH,
        door,
        services,
        operation_id="anthropic_messages",
        summary="Anthropic Messages; `model` names a route (its name, model or an alias)",
        tag="anthropic",
        request_schema=_request_schema(MessagesRequest),
        request_description="An Anthropic Messages request; a `message` or its event stream comes back.",
    )

    @post(
        ANTHROPIC_COUNT_TOKENS_PATH,
        operation_id="anthropic_count_tokens",
        tags=["anthropic"],
        summary="An estimate of a Messages request's input tokens (characters / 4; no tokenizer)",
        status_code=200,
    )
    async def count(request: Request[Any, Any, Any]) -> ASGIApp:
        access = services.access
        principal = access.authenticate(request.scope["headers"])
        model, tokens = count_tokens(await request.body())
        route = door.resolve(ChatRequest(messages=[], model=model))
        access.authorize(principal, route.path)
        return _json({"input_tokens": tokens})

    return [messages, count]


def probe_handlers(
    table: RouteTable, state_status: Callable[[], dict[str, Any]] | None = None
) -> list[HTTPRouteHandler]:
    """Liveness and readiness for orchestrators.

    `state_status` adds the shared state's condition to /readyz as detail only: with Redis lost the router
    still serves plain requests from local state, so it stays ready rather than drop out of the Service.
    """
    ready = {
        "status": "ready",
        "routes": len(table.routes),
        "config": table.config.source,
        "config_sha256": table.config.sha256,
        "pid": os.getpid(),  # which worker answered, when several serve one port
    }

    @get(HEALTHZ_PATH, operation_id="healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> ASGIApp:
        return _json({"status": "ok"})

    @get(READYZ_PATH, operation_id="readyz", tags=["ops"], summary="A route table is loaded and served")
    async def readyz() -> ASGIApp:
        if state_status is not None:
            return _json({**ready, "state": state_status()})
        return _json(ready)

    return [healthz, readyz]


def create_app(
    table: RouteTable,
    services: ChatServices,
    extra_handlers: Sequence[Any] = (),
    *,
    redact: Redact,
    doors: dict[str, Door] | None = None,
    state_status: Callable[[], dict[str, Any]] | None = None,
) -> Litestar:
    """The ASGI app serving `table`; `extra_handlers` are the process-wide ones (status, events, admin).

    `redact` masks known secrets in error messages (an upstream may echo its key in an error body).
    Raises ValueError for a route on one of the router's own paths (the validator refuses those first).
    """
    for route in table.routes:
        owner = reserved_owner(route.path)
        if owner is not None:
            raise ValueError(f"route {route.path} is on the router's own path {owner}; choose another path")
        if route.name in RESERVED_ROUTE_NAMES:
            raise ValueError(
                f"route {route.path}: the name {route.name!r} is the router's own; choose another"
            )
    doors = doors or front_doors(table)
    handlers: list[Any] = [table_handler(table, doors, services)]
    handlers += openai_handlers(table, services, doors[OPENAI_CHAT_PATH])
    handlers.append(responses_handler(services, doors[OPENAI_RESPONSES_PATH]))
    handlers += kinds_handlers(doors, services)
    handlers += anthropic_handlers(services, doors[ANTHROPIC_MESSAGES_PATH])
    handlers += probe_handlers(table, state_status)
    handlers += ollama_listing_handlers(table, services)
    handlers += ollama_door_handlers(doors, services)
    handlers += web_handlers()
    handlers += list(extra_handlers)
    return Litestar(
        route_handlers=handlers,
        exception_handlers=exception_handlers(redact, error_dialects(doors)),
        request_max_body_size=table.config.server.max_body_bytes,
        cors_config=cors_config(table.config.server.cors_allowed_origins),
        logging_config=None,  # Litestar's default would take over the root logger; the router owns logging
        openapi_config=openapi_config(services.access, table),
        debug=False,
    )


def error_dialects(doors: dict[str, Door]) -> dict[str, ErrorDialect]:
    """The error dialect of each path whose clients expect their own, the framework's errors included:
    every door's, and a dialect's paths that are not doors (count_tokens...), one line each."""
    dialects = {path: door.dialect.errors for path, door in doors.items()}
    dialects[ANTHROPIC_COUNT_TOKENS_PATH] = ANTHROPIC_ERRORS
    dialects.update(dict.fromkeys(OLLAMA_LISTING_PATHS, OLLAMA_ERRORS))  # /api/tags, /api/show...
    return dialects


def openapi_config(access: Access, table: RouteTable) -> OpenAPIConfig:
    """The OpenAPI document as JSON only, at `/schema` and `/schema/openapi.json`, for admins.

    No render plugin but JSON: the HTML pages would load third-party scripts onto the router's origin.
    The guard covers every path under `/schema`, Litestar's own not-found page included.
    """

    def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        access.check_admin(connection.scope["headers"], "the OpenAPI document")

    return OpenAPIConfig(
        title="router",
        version=__version__,
        description="One validated routing table in front of private LLM servers.",
        render_plugins=[TableDocument(table)],
        openapi_router=Router(OPENAPI_PATH, route_handlers=[], guards=[admin_only], include_in_schema=False),
    )
