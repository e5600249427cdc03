"""`encode_error`, the one writer of error responses and error events: a table of errors and what the
client receives for each (the socket tests in tests/api/test_errors.py check the same through the app)."""

from __future__ import annotations

import json

import pytest

from router.errors import BodyTooLarge, InvalidRequest, NotFound, Overloaded, RouterError, encode_error
from router.security import Redactor, Unauthenticated
from router.streaming import error_event
from router.upstreams.errors import UpstreamStatus, UpstreamTimeout

NO_SECRETS = Redactor()


@pytest.mark.parametrize(
    ("error", "status", "type_", "code", "headers"),
    [
        (InvalidRequest("bad", param="messages"), 400, "invalid_request_error", "invalid_request", set()),
        (Unauthenticated("who?"), 401, "authentication_error", "invalid_api_key", {"WWW-Authenticate"}),
        (NotFound("no route"), 404, "not_found_error", "model_not_found", set()),
        (BodyTooLarge(), 413, "invalid_request_error", "request_too_large", set()),
        (Overloaded("full", retry_after=2.5), 429, "rate_limit_error", "queue_full", {"Retry-After"}),
        (
            UpstreamStatus("slow down", status=429, retry_after=7),
            429,
            "rate_limit_error",
            "upstream_rate_limited",
            {"Retry-After"},
        ),
        (UpstreamStatus("boom", status=500), 502, "server_error", "upstream_error", set()),
        (UpstreamTimeout("late"), 504, "timeout", "upstream_timeout", set()),
        (KeyError("internal detail"), 500, "server_error", "internal_error", set()),
    ],
)
def test_each_error_is_written_with_its_status_fields_and_headers(
    error: BaseException, status: int, type_: str, code: str, headers: set[str]
) -> None:
    reply = encode_error(error, NO_SECRETS)
    body = json.loads(reply.body)
    assert (reply.status, reply.media_type) == (status, "application/json")
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == (type_, code)
    assert set(reply.headers) == headers
    if not isinstance(error, RouterError):
        assert "internal detail" not in reply.body.decode()


def test_the_retry_after_header_is_whole_seconds_and_never_below_one() -> None:
    assert encode_error(Overloaded("full", retry_after=0.2), NO_SECRETS).headers["Retry-After"] == "1"
    assert encode_error(Overloaded("full", retry_after=2.5), NO_SECRETS).headers["Retry-After"] == "3"


def test_secrets_are_masked_as_the_error_is_written_and_the_error_is_left_alone() -> None:
    error = UpstreamStatus("key sk-live-0123 rejected", status=401)
    reply = encode_error(error, Redactor(["sk-live-0123"]))
    assert json.loads(reply.body)["error"]["message"] == "key [REDACTED] rejected"
    assert error.message == "key sk-live-0123 rejected"


def test_a_stream_s_error_event_carries_the_same_body_as_a_response() -> None:
    error = InvalidRequest("bad", param="model")
    assert error_event(error, NO_SECRETS) == b"data: " + encode_error(error, NO_SECRETS).body + b"\n\n"
