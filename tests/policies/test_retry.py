from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from router.policies.retry import (
    backoff_delays,
    format_retry_after,
    parse_retry_after,
    retry_after_from_headers,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def now() -> float:
    return NOW


def test_backoff_yields_max_retries_delays() -> None:
    assert list(backoff_delays(0, 0.2, 5.0)) == []
    assert len(list(backoff_delays(3, 0.2, 5.0))) == 3


def test_backoff_upper_bound_doubles_up_to_cap() -> None:
    delays = list(backoff_delays(8, 0.2, 5.0, rng=lambda: 1.0))
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_backoff_lower_bound_is_zero() -> None:
    assert list(backoff_delays(4, 0.2, 5.0, rng=lambda: 0.0)) == [0.0] * 4


def test_backoff_full_jitter_spreads_within_bounds() -> None:
    rng = random.Random(1).random
    samples = [list(backoff_delays(4, 0.5, 3.0, rng=rng)) for _ in range(2000)]
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 3.0]):
        column = [s[attempt] for s in samples]
        assert all(0.0 <= d <= ceiling for d in column)
        assert min(column) < 0.05 * ceiling and max(column) > 0.95 * ceiling
        assert sum(column) / len(column) == pytest.approx(ceiling / 2, rel=0.1)


def test_backoff_many_attempts_do_not_overflow() -> None:
    delays = list(backoff_delays(2000, 0.2, 5.0, rng=lambda: 1.0))
    assert delays[-1] == 5.0


def test_backoff_zero_base_never_waits() -> None:
    assert list(backoff_delays(3, 0.0, 5.0, rng=lambda: 1.0)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-1", None),
        ("soon", None),
        ("nan", None),
        ("1e3", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=now) == expected


def test_parse_retry_after_http_date() -> None:
    future = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    assert future.endswith("GMT")
    assert parse_retry_after(future, now=now) == pytest.approx(90.0)


def test_parse_retry_after_past_date_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


def test_parse_retry_after_date_without_zone_is_gmt() -> None:
    value = format_datetime(datetime.fromtimestamp(NOW + 30, UTC)).replace("+0000", "-0000")
    assert parse_retry_after(value, now=now) == pytest.approx(30.0)


def test_parse_retry_after_garbage_date() -> None:
    assert parse_retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now=now) is None


def test_retry_after_from_headers_prefers_milliseconds() -> None:
    headers = httpx.Headers({"Retry-After-Ms": "1500", "Retry-After": "7"})
    assert retry_after_from_headers(headers) == 1.5
    assert retry_after_from_headers(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert retry_after_from_headers(httpx.Headers({"retry-after-ms": "x", "retry-after": "2"})) == 2.0
    assert retry_after_from_headers(httpx.Headers({})) is None


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "0"), (-3.0, "0"), (0.2, "1"), (1.0, "1"), (29.01, "30")]
)
def test_format_retry_after_rounds_up(seconds: float, header: str) -> None:
    assert format_retry_after(seconds) == header
