"""`/v1/responses` for the official openai SDK, over real sockets, with both kinds of upstream behind it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table, through_the_app

TEXT = "tok0 tok1 tok2 tok3 tok4"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
ALICE, BOB = "alice-key-" + "a" * 20, "bob-key-" + "b" * 20


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOllama, FakeOpenAI]]:
    with FakeOllama(["qwen3:32b"]) as ollama, FakeOpenAI(["smollm2"]) as local:
        yield ollama, local


def _table(ollama: FakeOllama, local: FakeOpenAI, defaults: dict[str, Any] | None = None, **top: Any) -> str:
    return table(
        upstreams={
            "ollama": {"type": "ollama", "base_url": ollama.base_url},
            "local": {"type": "openai", "base_url": local.base_url},
        },
        routes=[
            {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            {"path": "/chat/local", "model": "smollm2", "upstream": "local", "max_tokens": 64},
        ],
        defaults={"max_retries": 0, **(defaults or {})},
        **top,
    )


@pytest.fixture(scope="module")
def router(fakes: tuple[FakeOllama, FakeOpenAI]) -> Iterator[RunningRouter]:
    running = RunningRouter.from_yaml(_table(*fakes)).start()
    yield running
    running.stop()


@pytest.fixture(params=["ollama", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(kind: str, fakes: tuple[FakeOllama, FakeOpenAI]) -> Iterator[FakeOllama | FakeOpenAI]:
    upstream = fakes[0] if kind == "ollama" else fakes[1]
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def model(kind: str) -> str:
    return "qwen3" if kind == "ollama" else "local"


@pytest.fixture
def client(router: RunningRouter) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)


def sent_messages(fake: FakeOllama | FakeOpenAI) -> list[dict[str, Any]]:
    """The messages the upstream received in its last chat request."""
    body = fake.last_request.json
    assert isinstance(body, dict)
    return list(body["messages"])


def roles_and_text(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in messages]


# ---- create ----------------------------------------------------------------------------------------


def test_string_input(client: openai.OpenAI, fake: Any, model: str) -> None:
    response = client.responses.create(model=model, input="Hello there")
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens == 2 and response.usage.output_tokens == 5
    assert response.usage.total_tokens == 7
    assert roles_and_text(sent_messages(fake)) == [("user", "Hello there")]


def test_items_and_instructions(client: openai.OpenAI, fake: Any, model: str) -> None:
    response = client.responses.create(
        model=model,
        instructions="Answer in French.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"role": "assistant", "content": "Bonjour"},
            {"type": "message", "role": "user", "content": "How are you?"},
        ],
        temperature=0.3,
        top_p=0.5,
    )
    assert response.output_text == TEXT
    assert response.instructions == "Answer in French."
    assert roles_and_text(sent_messages(fake)) == [
        ("system", "Answer in French."),
        ("user", "Hi"),
        ("assistant", "Bonjour"),
        ("user", "How are you?"),
    ]
    body = fake.last_request.json
    sampling = body["options"] if "options" in body else body
    assert sampling["temperature"] == 0.3 and sampling["top_p"] == 0.5


def test_max_output_tokens_is_capped_and_reports_incomplete(
    client: openai.OpenAI, fakes: tuple[FakeOllama, FakeOpenAI]
) -> None:
    local = fakes[1]
    local.reset()
    client.responses.create(model="local", input="x", max_output_tokens=5000)
    assert local.last_request.json["max_tokens"] == 64  # the route's cap
    response = client.responses.create(model="local", input="x", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "tok0 tok1"


# ---- streams ---------------------------------------------------------------------------------------

TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_stream_event_sequence(client: openai.OpenAI, fake: Any, model: str) -> None:
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    assert [event.type for event in events] == TEXT_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == TEXT
    final = events[-1].response  # type: ignore[union-attr]
    assert final.id == events[0].response.id  # type: ignore[union-attr]
    assert final.output_text == TEXT
    assert final.usage is not None and final.usage.output_tokens == 5


def test_stream_helper(client: openai.OpenAI, fake: Any, model: str) -> None:
    with client.responses.stream(model=model, input="Hi", instructions="be short") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == TEXT
    assert final.output_text == TEXT and final.status == "completed"
    assert roles_and_text(sent_messages(fake))[0] == ("system", "be short")


def test_stream_failure_after_start_ends_with_response_failed(
    client: openai.OpenAI, fake: Any, model: str
) -> None:
    fake.set_behaviour("reset_mid_stream", after=2)
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert "response.completed" not in types
    assert types[-2:] == ["error", "response.failed"]
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and failed.error.message


# ---- function calling --------------------------------------------------------------------------------


def _answered(body: dict[str, Any]) -> bool:
    return bool(body["messages"][-1]["role"] == "tool")


def call_weather_until_answered(fake: FakeOllama | FakeOpenAI) -> None:
    """The model calls get_weather (and says nothing else) until the tool's result is in the conversation."""
    fake.reply_tool_calls = lambda body: (
        None if _answered(body) else [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    )
    fake.reply_text = lambda body: TEXT if _answered(body) else ""


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(client: openai.OpenAI, fake: Any, model: str, stream: bool) -> None:
    call_weather_until_answered(fake)
    question = {"role": "user", "content": "Weather in Paris?"}
    if stream:
        with client.responses.stream(model=model, input=[question], tools=[WEATHER_TOOL]) as events:
            types = [event.type for event in events]
            first = events.get_final_response()
        assert "response.function_call_arguments.delta" in types
        assert "response.function_call_arguments.done" in types
    else:
        first = client.responses.create(model=model, input=[question], tools=[WEATHER_TOOL])
    [call] = first.output
    assert call.type == "function_call"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id and call.status == "completed"
    tools = fake.last_request.json["tools"]
    assert tools[0]["function"]["name"] == "get_weather" and tools[0]["type"] == "function"

    second = client.responses.create(
        model=model,
        input=[
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == TEXT
    messages = sent_messages(fake)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2]["content"] == "sunny, 21C"
    if model == "local":  # the OpenAI-compatible upstream gets the ids that tie result to call
        assert messages[1]["tool_calls"][0]["id"] == call.call_id
        assert messages[2]["tool_call_id"] == call.call_id


# ---- previous_response_id and store ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues(client: openai.OpenAI, fake: Any, model: str, stream: bool) -> None:
    def create(**fields: Any) -> Any:
        if not stream:
            return client.responses.create(model=model, **fields)
        with client.responses.stream(model=model, **fields) as events:
            return events.get_final_response()

    first = create(input="My name is Ann.", instructions="first instructions")
    second = create(input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert roles_and_text(sent_messages(fake)) == [
        ("user", "My name is Ann."),  # the earlier instructions are not carried over, as in the API
        ("assistant", TEXT),
        ("user", "What is my name?"),
    ]
    create(input="And again?", previous_response_id=second.id, instructions="new")
    assert roles_and_text(sent_messages(fake)) == [
        ("system", "new"),
        ("user", "My name is Ann."),
        ("assistant", TEXT),
        ("user", "What is my name?"),
        ("assistant", TEXT),
        ("user", "And again?"),
    ]
    # the first response is still there to branch from
    create(input="Branch", previous_response_id=first.id)
    assert [m["content"] for m in sent_messages(fake)][-1] == "Branch"
    assert len(sent_messages(fake)) == 3


def test_previous_response_id_after_a_function_call(client: openai.OpenAI, fake: Any, model: str) -> None:
    """The Agents SDK's way: only the tool output is sent, the call comes from the stored response."""
    call_weather_until_answered(fake)
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER_TOOL])
    [call] = first.output
    assert call.type == "function_call"
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == TEXT
    messages = sent_messages(fake)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_store_false_keeps_nothing(client: openai.OpenAI, fake: Any, model: str) -> None:
    first = client.responses.create(model=model, input="secret", store=False)
    assert first.store is False
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=model, input="again", previous_response_id=first.id)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "previous_response_id" and body["code"] == "previous_response_not_found"
    assert first.id in body["message"]


def test_unknown_previous_response_id_is_404(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=model, input="x", previous_response_id="resp_nope")


def test_a_stored_response_belongs_to_its_key(
    fakes: tuple[FakeOllama, FakeOpenAI], start_router: Callable[..., RunningRouter]
) -> None:
    keys = {
        "api_keys": [
            {"name": "alice", "key": "${ALICE}"},
            {"name": "bob", "key": "sha256:" + hashlib.sha256(BOB.encode()).hexdigest()},
        ]
    }
    router = start_router(_table(*fakes, auth=keys), env={"ALICE": ALICE})
    alice = openai.OpenAI(base_url=router.url + "/v1", api_key=ALICE, max_retries=0)
    bob = openai.OpenAI(base_url=router.url + "/v1", api_key=BOB, max_retries=0)
    first = alice.responses.create(model="local", input="mine")
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="local", input="yours?", previous_response_id=first.id)
    alice.responses.create(model="local", input="still mine", previous_response_id=first.id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=router.url + "/v1", api_key="wrong", max_retries=0).responses.create(
            model="local", input="x"
        )


# ---- errors ------------------------------------------------------------------------------------------


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="gpt-9", input="x")
    assert "gpt-9" in caught.value.message


def test_bad_input_is_400_naming_the_field(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input=[{"type": "function_call_output", "output": "x"}])
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input[0].call_id"


def test_upstream_failure_before_the_stream_is_an_http_error(
    client: openai.OpenAI, fake: Any, model: str
) -> None:
    fake.set_behaviour("status", code=500)
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model=model, input="x", stream=True)
    assert caught.value.status_code == 502


# ---- Codex CLI's requests ------------------------------------------------------------------------------


def test_codex_shaped_request(router: RunningRouter, fake: Any, model: str) -> None:
    """What codex-rs sends on every turn (docs/dialects/openai_responses.md, "Codex CLI")."""
    call_weather_until_answered(fake)
    shell_tool = {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "array", "items": {"type": "string"}}},
        },
    }
    body = {
        "model": model,
        "instructions": "You are Codex.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "<permissions>"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "<environment_context>"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
            {"type": "reasoning", "summary": [], "content": None, "encrypted_content": None},
        ],
        "tools": [shell_tool, {"type": "web_search"}, {"type": "local_shell"}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": None,
        "store": False,
        "stream": True,
        "include": [],
        "prompt_cache_key": "0199-conversation",
        "text": {"verbosity": "medium"},
    }
    events = _sse_events(router, body)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "function_call" and done[0]["name"] == "get_weather"
    # the next turn replays the call and its output, without previous_response_id (store: false)
    body["input"] = [
        *body["input"],
        {
            "type": "function_call",
            "name": done[0]["name"],
            "arguments": done[0]["arguments"],
            "call_id": done[0]["call_id"],
        },
        {"type": "function_call_output", "call_id": done[0]["call_id"], "output": "a.txt\nb.txt"},
    ]
    events = _sse_events(router, body)
    assert events[-1]["type"] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "message" and done[0]["content"][0]["text"] == TEXT
    sent = sent_messages(fake)
    assert [m["role"] for m in sent] == ["system", "system", "user", "user", "assistant", "tool"]
    assert [t["function"]["name"] for t in fake.last_request.json["tools"]] == ["shell"]


def _sse_events(router: RunningRouter, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", router.url + "/v1/responses", json=body, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = response.read().decode()
    events = []
    for block in data.split("\n\n"):
        lines = [line for line in block.split("\n") if line.startswith("data: ")]
        if lines:
            events.append(json.loads(lines[0][len("data: ") :]))
    return events


# ---- the relay's guarantees hold for this dialect too ---------------------------------------------------


def test_heartbeats_while_silent_then_a_stall_fails_the_response(
    fakes: tuple[FakeOllama, FakeOpenAI], start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(_table(*fakes, defaults={"heartbeat_interval": 0.1, "stall_timeout": 0.6}))
    local = fakes[1]
    local.reset()
    body = {"model": "local", "input": "x", "stream": True}
    local.set_behaviour("stall_mid_stream", after=2, seconds=0.4)  # silent, but less than the stall timeout
    raw = _raw_stream(router, body)
    assert ": keepalive" in raw
    assert _sse_types(raw)[-1] == "response.completed"
    local.set_behaviour("stall_mid_stream", after=2, seconds=5)  # silent beyond it
    raw = _raw_stream(router, body)
    assert _sse_types(raw)[-2:] == ["error", "response.failed"]
    assert "stall_timeout" in raw
    local.reset()


def test_served_by_the_app_too_and_documented(
    fakes: tuple[FakeOllama, FakeOpenAI], start_router: Callable[..., RunningRouter]
) -> None:
    """Without the fast path (CORS on), the Litestar handler answers, alike."""
    router = through_the_app(
        start_router(_table(*fakes, server={"cors_allowed_origins": ["http://example.test"]}))
    )
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    assert client.responses.create(model="local", input="x").output_text == TEXT
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="local", input=[])
    document = httpx.get(router.url + "/schema/openapi.json").json()
    operation = document["paths"]["/v1/responses"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"input", "instructions", "previous_response_id", "store", "tools"} <= set(schema["properties"])


def _raw_stream(router: RunningRouter, body: dict[str, Any]) -> str:
    with httpx.stream("POST", router.url + "/v1/responses", json=body, timeout=10) as response:
        assert response.status_code == 200
        return response.read().decode()


def _sse_types(raw: str) -> list[str]:
    return [
        json.loads(line[len("data: ") :])["type"] for line in raw.split("\n") if line.startswith("data: ")
    ]


def test_with_sessions_off_nothing_is_stored(
    fakes: tuple[FakeOllama, FakeOpenAI], start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(_table(*fakes, sessions={"enabled": False}))
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)
    first = client.responses.create(model="local", input="x")
    assert first.output_text == TEXT
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="local", input="y", previous_response_id=first.id)
    assert "sessions.enabled" in caught.value.message
