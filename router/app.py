"""The Litestar application for one route table, built in one factory from typed inputs.

One POST handler per table entry (so every route shows in the OpenAPI document), the OpenAI-compatible
`/v1` pair, and the probes. Handlers are thin closures over the prepared `Route`: they parse the body and
call domain code. A reload builds a new app for the new table; `router.server` swaps it in atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from litestar import Litestar, Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router import __version__
from router.api.chat import ChatServices, Resolve, handle_chat
from router.api.errors import EXCEPTION_HANDLERS
from router.api.request import ChatRequest
from router.api.web import web_handlers
from router.errors import InvalidRequest, NotFound
from router.security.http import cors_config, redacting_handlers
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
            description="An OpenAI Chat Completions request; unknown fields reach OpenAI-compatible servers.",
        )


@cache
def _request_schema() -> dict[str, Any]:
    """The JSON Schema of a chat request, inlined (Litestar rebuilds `components`, dropping extra ones)."""
    schema = msgspec.json.schema(ChatRequest)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


def _json(data: Any, status: int = 200) -> ASGIResponse:
    return ASGIResponse(body=msgspec.json.encode(data), media_type="application/json", status_code=status)


OPENAI_CHAT_PATH = "/v1/chat/completions"


def chat_resolvers(table: RouteTable) -> dict[str, Resolve]:
    """For each chat path, how a request finds its route: fixed for a route's own path, by `model` on
    `/v1/chat/completions`. Shared by the app's handlers and the fast path, so both answer alike."""
    resolvers: dict[str, Resolve] = {route.path: _fixed(route) for route in table.routes}
    resolvers[OPENAI_CHAT_PATH] = _by_model(table)
    return resolvers


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
                f"no route or model named {parsed.model!r}; GET /v1/models lists them", param="model"
            )
        return route

    return by_model


def route_handler(route: Route, services: ChatServices, resolve: Resolve) -> HTTPRouteHandler:
    """The POST handler serving one table entry."""

    async def chat(request: Request[Any, Any, Any]) -> ASGIApp:
        return await handle_chat(request, services, resolve)

    upstreams = ", ".join(r.upstream.name for r in route.replicas)
    return post(
        route.path,
        name=f"route:{route.name}",
        operation_id=f"chat_{route.name}",
        summary=f"Chat with {route.model}",
        description=f"Route `{route.name}`: model `{route.model}` on {upstreams}. {_CHAT_RESPONSES_DOC}",
        tags=["routes"],
        operation_class=ChatOperation,
        status_code=200,
    )(chat)


def openai_handlers(table: RouteTable, services: ChatServices, by_model: Resolve) -> list[HTTPRouteHandler]:
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
        operation_id="chat_completions",
        tags=["openai"],
        operation_class=ChatOperation,
        summary="OpenAI-compatible chat; `model` names a route (its name or its model)",
        status_code=200,
    )
    async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
        return await handle_chat(request, services, by_model)

    @get("/v1/models", operation_id="list_models", tags=["openai"], summary="The routes, as OpenAI models")
    async def list_models(request: Request[Any, Any, Any]) -> ASGIApp:
        access = services.access
        allowed = access.allowed_routes(access.authenticate(request.scope["headers"]))
        body = models_body if allowed is None else models_for(allowed)
        return ASGIResponse(body=body, media_type="application/json")

    return [chat_completions, list_models]


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

    @get("/healthz", operation_id="healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> ASGIApp:
        return _json({"status": "ok"})

    @get("/readyz", operation_id="readyz", tags=["ops"], summary="A route table is loaded and served")
    async def readyz() -> ASGIApp:
        if state_status is not None:
            return _json({**ready, "state": state_status()})
        return _json(ready)

    return [healthz, readyz]


def create_app(
    table: RouteTable,
    services: ChatServices,
    extra_handlers: Sequence[Any] = (),
    redact: Callable[[str], str] | None = None,
    resolvers: dict[str, Resolve] | None = None,
    state_status: Callable[[], dict[str, Any]] | None = None,
) -> Litestar:
    """The ASGI app serving `table`; `extra_handlers` are the process-wide ones (status, events, admin).

    `redact` masks known secrets in error messages (an upstream may echo its key in an error body).
    """
    resolvers = resolvers or chat_resolvers(table)
    handlers: list[Any] = [route_handler(route, services, resolvers[route.path]) for route in table.routes]
    handlers += openai_handlers(table, services, resolvers[OPENAI_CHAT_PATH])
    handlers += probe_handlers(table, state_status)
    handlers += web_handlers()
    handlers += list(extra_handlers)
    return Litestar(
        route_handlers=handlers,
        exception_handlers=redacting_handlers(EXCEPTION_HANDLERS, redact),  # type: ignore[arg-type]
        request_max_body_size=table.config.server.max_body_bytes,
        cors_config=cors_config(table.config.server.cors_allowed_origins),
        logging_config=None,  # Litestar's default would take over the root logger; the router owns logging
        openapi_config=OpenAPIConfig(
            title="router",
            version=__version__,
            description="One validated routing table in front of private LLM servers.",
        ),
        debug=False,
    )
