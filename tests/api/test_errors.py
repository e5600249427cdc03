"""Bad input and unknown places get OpenAI-shaped errors with the right status, and lose nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.support.router_server import RunningRouter, table


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_malformed_json_is_400(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(
        both_upstreams_router.url + "/chat/local",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ([1, 2], None),
    ],
)
def test_invalid_fields_are_400_naming_the_field(
    both_upstreams_router: RunningRouter, fake_openai: FakeOpenAI, body: object, param: str | None
) -> None:
    response = httpx.post(both_upstreams_router.url + "/chat/local", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fake_openai.chat_count == 0  # nothing reached the model


def test_unknown_path_is_404_in_openai_shape(both_upstreams_router: RunningRouter) -> None:
    response = httpx.post(both_upstreams_router.url + "/chat/nope", json={})
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"


def test_wrong_method_is_405_in_openai_shape(both_upstreams_router: RunningRouter) -> None:
    response = httpx.get(both_upstreams_router.url + "/chat/local")
    assert response.status_code == 405
    assert error_of(response)["type"] == "invalid_request_error"


def test_body_over_the_limit_is_413(fake_openai: FakeOpenAI, start_router) -> None:  # type: ignore[no-untyped-def]
    router = start_router(
        table(
            {"local": {"type": "openai", "base_url": fake_openai.base_url}},
            [{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            server={"max_body_bytes": 2048},
        )
    )
    big = {"messages": [{"role": "user", "content": "x" * 4096}]}
    response = httpx.post(router.url + "/chat/local", json=big)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert fake_openai.chat_count == 0


def test_probes_answer(both_upstreams_router: RunningRouter) -> None:
    assert httpx.get(both_upstreams_router.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(both_upstreams_router.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["routes"] == 2 and len(ready["config_sha256"]) == 64


def test_openapi_document_lists_one_post_per_route(both_upstreams_router: RunningRouter) -> None:
    doc = httpx.get(both_upstreams_router.url + "/schema/openapi.json").json()
    for path in ("/chat/qwen3", "/chat/local", "/v1/chat/completions"):
        operation = doc["paths"][path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:  # a route's body refers to the one chat request schema in `components`
            schema = doc["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
        assert schema["required"] == ["messages"]
        assert schema["properties"]["messages"]["items"]["properties"]["role"]["type"] == "string"
