"""How each kind of model server is asked to continue an answer that another one started (docs/resume.md).

A stream that broke after its answer started is resumed (`router.resume`) by sending the same conversation
to another upstream with the partial answer as the assistant's last message, which that server must
*continue* rather than answer anew. Servers do that in different ways, declared per upstream as
`continuation:` in the table; this module is the one place that knows them:

- `ollama`: `/api/chat` continues a final assistant message by itself (the adapter sends it as the last
  message, like any other) when the model's template leaves that message open: templates written with
  `.Prompt`/`.Response` always do, a `.Messages` template only if it is written to (docs/resume.md says
  how to check one; declare `none` for a model whose template closes it);
- `vllm`: the OpenAI body gets `continue_final_message: true` and `add_generation_prompt: false` (vLLM
  refuses the first without the second, whose default is true; without them the final assistant message
  is closed and a new turn begins), and `echo: false`, so that a client's own `echo` cannot make the
  server repeat the partial answer at the head of its continuation;
- `llama_cpp`: llama.cpp's `llama-server` continues a final assistant message by itself (assistant
  prefill, on unless it runs with `--no-prefill-assistant`); the same three fields as for vLLM are sent
  too: builds since May 2026 read them (the continuation is then asked for explicitly, whatever the
  server's prefill flag, and `echo: false` keeps the partial out of the answer), older builds continue by
  their prefill alone (it overrides `add_generation_prompt`);
- `none`: the server cannot be asked to continue (llama-cpp-python's server is one: it closes the final
  assistant message and starts a new turn, whatever the request says); such upstreams are never chosen
  to resume a stream.

The body built here is the internal (OpenAI chat) body; each adapter translates it as usual.
"""

from __future__ import annotations

from typing import Any

_CONTINUE_FINAL_MESSAGE: dict[str, Any] = {
    "continue_final_message": True,
    "add_generation_prompt": False,
    "echo": False,
}
"""vLLM's chat-template options for continuing the final message, which llama-server reads too."""

_EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "ollama": {},
    "vllm": _CONTINUE_FINAL_MESSAGE,
    "llama_cpp": _CONTINUE_FINAL_MESSAGE,
}
"""The fields each mechanism that can continue a final assistant message adds (every one but `none`)."""


def can_continue(mechanism: str) -> bool:
    """Whether an upstream with this mechanism may be chosen to resume a stream."""
    return mechanism in _EXTRA_FIELDS


def continuation_body(mechanism: str, body: dict[str, Any], partial: str) -> dict[str, Any]:
    """The internal chat body asking an upstream with `mechanism` to continue `partial`.

    The conversation is `body`'s; the partial answer becomes the final assistant message (appended to the
    client's own final assistant message when the client already prefilled one: the model continues the
    whole of it). An empty `partial` (the stream broke before any text) gives `body` itself: the request
    asked again. `body` is not changed. ValueError for `none`: the caller never picks such an upstream.
    """
    extra = _EXTRA_FIELDS.get(mechanism)
    if extra is None:
        raise ValueError(f"continuation {mechanism!r} cannot continue an answer")
    if not partial:  # nothing of the answer was relayed (a role chunk at most): ask again, as it was
        return body
    messages = list(body["messages"])
    last = messages[-1] if messages else None
    prefilled = _text_of(last) if isinstance(last, dict) and last.get("role") == "assistant" else None
    if prefilled is not None:
        messages[-1] = {**messages[-1], "content": prefilled + partial}
    else:
        messages.append({"role": "assistant", "content": partial})
    return {**body, "messages": messages, **extra}


def _text_of(message: dict[str, Any]) -> str | None:
    """A message's content as one text (string content, or text parts only); None if it has other parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text") or "") for p in content)
    return None
