"""Token counts for an answer whose upstream reported none: an honest estimate, always marked as one.

llama-cpp-python ignores `stream_options.include_usage`, Ollama leaves `prompt_eval_count` out when the
whole prompt came from its cache, and a stream cut off half-way never reaches its usage chunk. Counting
nothing there would make a key's use look smaller than it was, and quotas could be dodged by streaming;
so the router counts what it relayed instead, and the record, the log line (`tokens_estimated`) and the
metrics (`estimated="true"`) say the figure is an estimate.

The estimate is characters / 4, rounded up (the usual rule of thumb for English text with BPE tokenizers;
it undercounts code and non-Latin scripts). No tokenizer runs: the router does not know the upstream's
vocabulary, and tokenizing on the hot path would cost more than the rest of the relay. Prompts count
their text content plus 4 tokens a message for the role and the chat template's framing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4


def estimate_tokens(chars: int) -> int:
    """Tokens for `chars` characters of text: chars / 4, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_prompt(messages: Iterable[Any]) -> int:
    """Tokens of a chat prompt: its messages' text (string or text parts) plus a per-message overhead."""
    chars = 0
    count = 0
    for message in messages:
        count += 1
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return estimate_tokens(chars) + MESSAGE_OVERHEAD * count
