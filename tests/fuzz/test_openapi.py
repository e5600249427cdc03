"""Schemathesis against the running router's own OpenAPI document: no 5xx of the router's making.

Every documented operation is called with generated requests, valid ones and invalid ones (schemathesis'
positive and negative modes). The fake upstreams are healthy, so any 5xx would be the router's own
failure, and every error must be an error object of the door's dialect (OpenAI's unless `ERROR_KEYS` says
otherwise). `/events` is left out: it is an endless stream.

The operations are driven from their hypothesis strategies directly rather than through schemathesis'
pytest plugin, whose lazy-fixture loader does not work with the pytest this project runs.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter

Router = tuple[RunningRouter, FakeOllama, FakeOpenAI]
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 25}
SKIPPED = {"/events"}
OPENAI_ERROR = ({"error"}, {"message", "type", "param", "code"})
ANTHROPIC_ERROR = ({"type", "error"}, {"type", "message"})
ERROR_KEYS = {  # path -> (the error body's keys, its `error` object's keys)
    "/v1/messages": ANTHROPIC_ERROR,
    "/v1/messages/count_tokens": ANTHROPIC_ERROR,
}
OLLAMA_PREFIX = "/api/"  # Ollama's `{"error": "..."}`: the error is a string (docs/dialects/ollama_api.md)


def _error_shape_ok(path: str, body: dict[str, object]) -> bool:
    if path.startswith(OLLAMA_PREFIX):
        return set(body) == {"error"} and isinstance(body["error"], str)
    outer, inner = ERROR_KEYS.get(path, OPENAI_ERROR)
    error = body.get("error")
    return set(body) == outer and isinstance(error, dict) and set(error) == inner


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
def test_no_server_errors(fuzz_router: Router, mode: GenerationMode) -> None:
    router = fuzz_router[0]
    schema = schemathesis.openapi.from_url(router.url + "/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/chat/qwen3", "/chat/local", "/v1/chat/completions", "/metrics"} <= {
        op.path for op in operations
    }
    client = httpx.Client(base_url=router.url, timeout=10)
    fuzzed: set[str] = set()

    for operation in operations:
        if operation.path in SKIPPED:
            continue

        @settings(
            max_examples=EXAMPLES[mode], deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            kwargs = case.as_transport_kwargs(base_url=router.url)
            response = client.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=kwargs.get("headers"),
                content=_content(kwargs),
            )
            where = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert _error_shape_ok(case.operation.path, json.loads(response.text)), where

        try:
            call()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body): valid calls cover it
            assert mode is GenerationMode.NEGATIVE and not operation.body, operation.path
            continue
        fuzzed.add(operation.path)
    assert {"/chat/qwen3", "/chat/local", "/v1/chat/completions"} <= fuzzed
    assert {"/api/chat", "/api/generate", "/api/embed"} <= fuzzed
    assert client.get("/healthz").status_code == 200


def _content(kwargs: dict[str, object]) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return data if isinstance(data, bytes) else None
