"""Text from outside quoted back in error messages and log lines, cut to a size a reader can take.

A client controls the model name, the path, the session id and every header it sends, within the body
and head limits (megabytes). Quoting such a value whole would copy it into the error body and into a log
line, so an attacker's 500 KB model name became a 500 KB answer and a 500 KB line in the log pipeline.
Every place that puts outside text into a message goes through `shown` or `quoted`: the value itself when
it is short, otherwise its start and its length, which is all a reader needs to recognise it.
"""

from __future__ import annotations

SHOWN = 120
"""Characters of a client value quoted in a message: a long model name or path still reads whole."""


def shown(text: str, limit: int = SHOWN) -> str:
    """`text` itself when at most `limit` characters long, else its first `limit` and its length.

    `shown("a" * 500_000)` is `"aaa...a... (500000 characters)"` with 120 `a`s.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quoted(text: str, limit: int = SHOWN) -> str:
    """Like `shown`, quoted with escapes (`repr`), the length outside: `'aaa'... (500000 characters)`."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
