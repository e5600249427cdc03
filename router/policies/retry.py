"""Retry pacing: full-jitter exponential backoff, and reading/writing Retry-After.

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): each delay is uniform in
[0, min(cap, base * 2**attempt)], which spreads a crowd of retrying clients better than equal or
decorrelated jitter and never exceeds the cap.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delays", "format_retry_after", "parse_retry_after", "retry_after_from_headers"]

_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_MAX_EXPONENT = 62  # 2**62 dwarfs any cap; keeps base * 2**attempt a finite float


def backoff_delays(
    max_retries: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """`max_retries` delays in seconds, the n-th (from 0) uniform in [0, min(cap, base * 2**n)]."""
    for attempt in range(max_retries):
        yield rng() * min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date. None if absent/invalid.

    A date in the past gives 0.0. Fractional seconds are accepted although RFC 9110 says integer, because
    some servers send them.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Prefer OpenAI's `retry-after-ms`, then `Retry-After`. Headers must be case-insensitive (aiohttp's)."""
    ms = headers.get("retry-after-ms")
    if ms is not None and _SECONDS.fullmatch(ms.strip()):
        return float(ms.strip()) / 1000.0
    return parse_retry_after(headers.get("retry-after"), now=now)


def format_retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, rounded up, so a client never comes back too early."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "0"
    return str(math.ceil(seconds))
