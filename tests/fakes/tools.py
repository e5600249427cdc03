"""Fake upstreams that answer with tool calls, each in its own dialect's wire form.

Set `reply_tool_calls` to a list of `(name, arguments)` (arguments a dict), or to a function of the request
body returning such a list (or None to answer with text as usual, e.g. once the tool result came back):

    fake = ToolOpenAI().start()
    fake.reply_tool_calls = lambda body: None if body["messages"][-1]["role"] == "tool" else [("f", {"a": 1})]

OpenAI-compatible: the call's id and name in one chunk, then its arguments in two pieces, finish reason
`tool_calls` (as vLLM and OpenAI stream them). Ollama: the whole calls (arguments as an object) on one line
before the `done` line, as Ollama sends them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ._base import Frames, Reply, json_bytes
from ._ollama import FakeOllama, _counters
from ._openai import _DONE, FakeOpenAI, _choice_chunk, _usage

Calls = list[tuple[str, dict[str, Any]]]
ToolScript = Calls | Callable[[dict[str, Any]], Calls | None] | None


@dataclass(frozen=True)
class ToolReply(Reply):
    """A reply that is tool calls: `calls` as (name, arguments JSON text)."""

    calls: tuple[tuple[str, str], ...] = ()


class _Tools:
    reply_tool_calls: ToolScript = None

    def _with_calls(self, reply: Reply, body: dict[str, Any]) -> Reply:
        script = self.reply_tool_calls
        calls = script(body) if callable(script) else script
        if not calls:
            return reply
        encoded = tuple((name, json.dumps(arguments, separators=(",", ":"))) for name, arguments in calls)
        return ToolReply(**{**asdict(reply), "pieces": (), "finish_reason": "tool_calls", "calls": encoded})


class ToolOpenAI(_Tools, FakeOpenAI):
    """A FakeOpenAI that answers with the scripted tool calls."""

    def parse_chat(self, body: dict[str, Any]) -> Reply:
        return self._with_calls(super().parse_chat(body), body)

    def stream_frames(self, reply: Reply) -> Frames:
        if not isinstance(reply, ToolReply):
            return super().stream_frames(reply)
        id_, created = self._new_id()
        prefix = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
            id_.encode(),
            created,
            json.dumps(reply.model).encode(),
        )
        usage = reply.include_usage
        content = []
        for i, (name, arguments) in enumerate(reply.calls):
            head = {"index": i, "id": f"call_fake{i}", "type": "function"}
            content.append({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                content.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        tail = [_choice_chunk({}, "tool_calls", usage)]
        if usage:
            tail.append(json_bytes({"choices": [], "usage": _usage(reply)})[1:] + b"\n\n")
        return Frames(
            head=(prefix + _choice_chunk({"role": "assistant", "content": None}, None, usage),),
            content=tuple(prefix + _choice_chunk(delta, None, usage) for delta in content),
            tail=b"".join(prefix + suffix for suffix in tail) + _DONE,
        )

    def full_body(self, reply: Reply) -> bytes:
        if not isinstance(reply, ToolReply):
            return super().full_body(reply)
        id_, created = self._new_id()
        calls = [
            {"id": f"call_fake{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, (name, arguments) in enumerate(reply.calls)
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
        return json_bytes(
            {
                "id": id_,
                "object": "chat.completion",
                "created": created,
                "model": reply.model,
                "choices": [choice],
                "usage": _usage(reply),
            }
        )


class ToolOllama(_Tools, FakeOllama):
    """A FakeOllama that answers with the scripted tool calls."""

    def parse_chat(self, body: dict[str, Any]) -> Reply:
        return self._with_calls(super().parse_chat(body), body)

    @staticmethod
    def _message(reply: ToolReply) -> bytes:
        calls = [{"function": {"name": name, "arguments": json.loads(args)}} for name, args in reply.calls]
        return json_bytes({"role": "assistant", "content": "", "tool_calls": calls})

    def _ollama_prefix(self, reply: Reply) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return b'{"model":' + json.dumps(reply.model).encode() + b',"created_at":"' + stamp.encode() + b'",'

    def stream_frames(self, reply: Reply) -> Frames:
        if not isinstance(reply, ToolReply):
            return super().stream_frames(reply)
        prefix = self._ollama_prefix(reply)
        line = prefix + b'"message":' + self._message(reply) + b',"done":false}\n'
        done = (
            prefix
            + b'"message":{"role":"assistant","content":""},"done":true,'
            + _counters(replace(reply, finish_reason="stop"))
            + b"\n"
        )
        return Frames(head=(), content=(line,), tail=done)

    def full_body(self, reply: Reply) -> bytes:
        if not isinstance(reply, ToolReply):
            return super().full_body(reply)
        return (
            self._ollama_prefix(reply)
            + b'"message":'
            + self._message(reply)
            + b',"done":true,'
            + _counters(replace(reply, finish_reason="stop"))
        )
