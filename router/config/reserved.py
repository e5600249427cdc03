"""The paths the router serves itself, in one place: the app registers them, the validator keeps routes off.

A route on one of these paths would either hide the router's own endpoint or make the app refuse to start
(`/schema` is the OpenAPI document's tree), so `router validate` refuses exactly what `router serve` would.
The app's factory checks its own handlers against this list, and a test builds the app to prove every path
it registers is reserved here. `/api` and `/v1` are reserved whole for the dialect front doors (Ollama's
`/api/chat`, OpenAI's and Anthropic's `/v1/...`), present and coming.
"""

from __future__ import annotations

from router.config.common import normalise_path

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
OPENAI_CHAT_PATH = "/v1/chat/completions"
OPENAI_MODELS_PATH = "/v1/models"
OPENAI_RESPONSES_PATH = "/v1/responses"
OPENAI_EMBEDDINGS_PATH = "/v1/embeddings"
OPENAI_COMPLETIONS_PATH = "/v1/completions"
ANTHROPIC_MESSAGES_PATH = "/v1/messages"
ANTHROPIC_COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
OPENAPI_PATH = "/schema"

RESERVED_PATHS = frozenset({"/", HEALTHZ_PATH, READYZ_PATH, "/status", "/events", "/metrics", "/debug"})
"""Single paths the router answers itself."""

RESERVED_PREFIXES = ("/v1", "/api", "/admin", "/sessions", OPENAPI_PATH, "/static", "/ops", "/usage")
"""Path trees the router owns entirely: front doors, administration, sessions, its documents and files."""


ROUTE_OPERATION_PREFIX = "chat_"
"""A route's OpenAPI operation id is this prefix and its name (`chat_qwen3`)."""

OPENAI_CHAT_OPERATION = "chat_completions"
"""The operation id of `/v1/chat/completions`."""

RESERVED_ROUTE_NAMES = frozenset({OPENAI_CHAT_OPERATION.removeprefix(ROUTE_OPERATION_PREFIX)})
"""Route names whose operation id would be one of the router's own: the OpenAPI document needs them
unique, and the app would fail to produce it."""


def reserved_owner(path: str) -> str | None:
    """Why `path` cannot be a route: the reserved tree or endpoint it falls in, or None when it is free.

    Compared as route paths are compared (ignoring case and a trailing slash).
    """
    normal = normalise_path(path)
    for prefix in RESERVED_PREFIXES:
        if normal == prefix or normal.startswith(prefix + "/"):
            return prefix + "/"
    return normal if normal in RESERVED_PATHS else None
