"""Ollama's API as a front door: the model listings and the version (`/api/tags`, `/api/show`, `/api/ps`,
`/api/version`), answered from the route table.

Tools written for Ollama list the models first and then name one in `/api/chat`: here the models are the
routes, under their names and aliases, so whatever a tool picks from the list also works in a request. The
router cannot know what Ollama would say about the files behind a model (size, digest, quantization), so
those fields are honest placeholders (0, a digest of the route's name and model, empty strings);
docs/dialects/ollama_api.md lists each field and its source. Errors are Ollama's `{"error": "..."}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, get, head, post, route
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.api.chat import ChatServices
from router.dialects.base import Door, Resolve
from router.dialects.ollama_api import (
    OLLAMA_CHAT,
    OLLAMA_EMBED,
    OLLAMA_EMBEDDINGS,
    OLLAMA_ERRORS,
    OLLAMA_GENERATE,
    ChatBody,
    EmbedBody,
    EmbeddingsBody,
    GenerateBody,
)
from router.echo import quoted, shown
from router.errors import InvalidRequest, NotFound, RouterError, encode_error
from router.protocol.openai_chat import ChatRequest
from router.table import Route, RouteTable

OLLAMA_API_VERSION = "0.33.0"
"""What `/api/version` answers: the Ollama release whose API this front door follows (clients compare it
against the version a feature needs, so it must read as an Ollama version, not the router's own)."""

CHAT_PATH = "/api/chat"
GENERATE_PATH = "/api/generate"
EMBED_PATH = "/api/embed"
EMBEDDINGS_PATH = "/api/embeddings"
TAGS_PATH = "/api/tags"
SHOW_PATH = "/api/show"
PS_PATH = "/api/ps"
VERSION_PATH = "/api/version"
OLLAMA_LISTING_PATHS = (TAGS_PATH, SHOW_PATH, PS_PATH, VERSION_PATH)
"""Ollama's paths that are not doors: the framework's errors there (405, 413) are Ollama's shape too."""

_LATEST = ":latest"


def route_names(route: Route) -> tuple[str, ...]:
    """The names a route is listed under: its name, then its aliases."""
    return (route.name, *(a for a in route.config.aliases if a != route.name))


def find_route(table: RouteTable, name: str) -> Route:
    """The route a model name selects (its name, model or an alias; `name:latest` is `name`, as in
    Ollama); 404 in Ollama's words otherwise."""
    found = table.by_model.get(name)
    if found is None and name.endswith(_LATEST):
        found = table.by_model.get(name.removesuffix(_LATEST))
    if found is None:
        raise NotFound(
            f"model {quoted(name)} not found: no route has that name, model or alias; "
            "GET /api/tags lists them",
            param="model",
        )
    return found


def _by_name(table: RouteTable) -> Resolve:
    def by_name(parsed: ChatRequest) -> Route:
        return find_route(table, parsed.model or "")

    return by_name


def ollama_doors(table: RouteTable) -> dict[str, Door]:
    """The Ollama front doors that answer with a model (`router.app.front_doors` adds them to its table)."""
    by_name = _by_name(table)
    return {
        CHAT_PATH: Door(OLLAMA_CHAT, by_name),
        GENERATE_PATH: Door(OLLAMA_GENERATE, by_name),
        EMBED_PATH: Door(OLLAMA_EMBED, by_name),
        EMBEDDINGS_PATH: Door(OLLAMA_EMBEDDINGS, by_name),
    }


# (path, OpenAPI operation id, summary, request type) of each door, for `router.app`'s handlers.
DOORS_DOC: tuple[tuple[str, str, str, type], ...] = (
    (
        CHAT_PATH,
        "ollama_chat",
        "Ollama chat; `model` names a route (NDJSON unless `stream` is false)",
        ChatBody,
    ),
    (
        GENERATE_PATH,
        "ollama_generate",
        "Ollama completion of a prompt (and `suffix`) on a chat route",
        GenerateBody,
    ),
    (EMBED_PATH, "ollama_embed", "Ollama embeddings; `model` names an embeddings route", EmbedBody),
    (EMBEDDINGS_PATH, "ollama_embeddings", "Ollama's older one-vector embeddings endpoint", EmbeddingsBody),
)


def _json(data: Any) -> ASGIResponse:
    return ASGIResponse(body=msgspec.json.encode(data), media_type="application/json")


def error_response(error: BaseException, services: ChatServices) -> ASGIResponse:
    """Any failure as Ollama writes it: `{"error": "..."}` with the status."""
    reply = encode_error(error, services.redact, OLLAMA_ERRORS)
    return ASGIResponse(
        body=reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
    )


def _details(route: Route) -> dict[str, Any]:
    """What Ollama reads from the model file; unknown behind a route, so empty."""
    return {
        "parent_model": "",
        "format": "",
        "family": "",
        "families": [],
        "parameter_size": "",
        "quantization_level": "",
    }


def _parameters(route: Route) -> str:
    """The route's `options` as `ollama show` prints a Modelfile's parameters (name padded, then value)."""
    lines = []
    for key, value in route.options.items():
        for item in value if isinstance(value, list) else [value]:
            text = (
                msgspec.json.encode(item).decode()
                if isinstance(item, str)
                else str(item).lower()
                if isinstance(item, bool)
                else str(item)
            )
            lines.append(f"{key:<30} {text}")
    return "\n".join(lines)


def ollama_listing_handlers(table: RouteTable, services: ChatServices) -> list[HTTPRouteHandler]:
    """`/api/tags`, `/api/show`, `/api/ps` and `/api/version` for one table version."""
    modified_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    entries: list[tuple[Route, dict[str, Any]]] = []
    for r in table.routes:
        digest = hashlib.sha256(f"{r.name}\0{r.model}".encode()).hexdigest()
        for name in route_names(r):
            entries.append(
                (
                    r,
                    {
                        "name": name,
                        "model": name,
                        "modified_at": modified_at,
                        "size": 0,
                        "digest": digest,
                        "details": _details(r),
                    },
                )
            )

    def visible(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        access = services.access
        allowed = access.allowed_routes(access.authenticate(request.scope["headers"]))
        return [entry for r, entry in entries if allowed is None or r.path in allowed]

    def answering(build: Callable[[Request[Any, Any, Any]], Any]) -> Callable[..., Any]:
        async def handler(request: Request[Any, Any, Any]) -> ASGIApp:
            try:
                return _json(await build(request))
            except RouterError as error:
                return error_response(error, services)

        return handler

    async def tags(request: Request[Any, Any, Any]) -> Any:
        return {"models": visible(request)}

    async def ps(request: Request[Any, Any, Any]) -> Any:
        return {"models": [{**entry, "size_vram": 0} for entry in visible(request)]}

    async def show(request: Request[Any, Any, Any]) -> Any:
        access = services.access
        principal = access.authenticate(request.scope["headers"])
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            raise InvalidRequest("the request body is not valid JSON") from None
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("model is required", param="model")
        found = find_route(table, name)
        access.authorize(principal, found.path)
        capabilities = ["embedding"] if found.config.kind == "embeddings" else ["completion", "tools"]
        return {
            "modelfile": "",
            "parameters": _parameters(found),
            "template": "",
            "details": _details(found),
            "model_info": {"general.architecture": "", "general.basename": found.model},
            "capabilities": capabilities,
            "modified_at": modified_at,
        }

    async def version(_: Request[Any, Any, Any]) -> Any:
        return {"version": OLLAMA_API_VERSION}

    @head("/", status_code=200, include_in_schema=False)  # `/` is the chat page's in the document
    async def heartbeat() -> None:
        # Ollama answers HEAD / (its clients' heartbeat) with 200. GET / stays the chat page: a client that
        # reads "Ollama is running" there gets the page instead (see the docs).
        return None

    @head([TAGS_PATH, VERSION_PATH], status_code=200, include_in_schema=False)
    async def head_listings() -> None:
        # Ollama answers HEAD on these too (liveness checks); the bodies are for GET.
        return None

    @route(
        "/api/{rest:path}",
        http_method=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"],
        include_in_schema=False,
        status_code=404,
    )
    async def not_served(request: Request[Any, Any, Any]) -> ASGIApp:
        # Pull, push, create, copy, delete, blobs...: the router's models are its routes, not files.
        return error_response(
            NotFound(
                f"{request.method} {shown(request.url.path)} is not served by this router: its models are "
                "the routes of its table (GET /api/tags lists them)",
                code="not_found",
            ),
            services,
        )

    tag = ["ollama"]
    return [
        not_served,
        heartbeat,
        head_listings,
        get(
            TAGS_PATH,
            operation_id="ollama_tags",
            summary="The routes, as Ollama lists models",
            tags=tag,
        )(answering(tags)),
        post(
            SHOW_PATH,
            operation_id="ollama_show",
            summary="One route, as Ollama shows a model",
            status_code=200,
            tags=tag,
        )(answering(show)),
        get(
            PS_PATH, operation_id="ollama_ps", summary="The routes, as Ollama lists running models", tags=tag
        )(answering(ps)),
        get(
            VERSION_PATH,
            operation_id="ollama_version",
            summary="The Ollama API version followed",
            tags=tag,
        )(answering(version)),
    ]
