"""The access policy, the token bucket and the redactor on their own, without a server."""

from __future__ import annotations

import hashlib

import pytest

from router.config import load_config_text
from router.security import (
    Forbidden,
    KeyAccess,
    OpenAccess,
    RateLimited,
    Redactor,
    Unauthenticated,
    build_access,
    config_secrets,
    public_url,
)
from router.security.keys import presented_key
from router.security.ratelimit import TokenBucket
from tests.support.router_server import table

KEY = "k-0123456789abcdef"


def keyed(**auth: object) -> str:
    return table(
        upstreams={
            "u": {"type": "openai", "base_url": "http://u:pw-0123456@127.0.0.1:9/v1", "api_key": "${UK}"}
        },
        routes=[
            {"path": "/chat/a", "model": "a", "upstream": "u"},
            {"path": "/chat/B", "model": "b", "upstream": "u"},
        ],
        auth=auth,
    )


def headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"authorization", b"Bearer " + key.encode())]


@pytest.mark.parametrize(
    ("sent", "found"),
    [
        ([], None),
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc ")], b"abc"),
        ([(b"authorization", b"Basic abc")], b""),
        ([(b"authorization", b"Bearer")], b""),
        ([(b"x-api-key", b" abc ")], b"abc"),
        ([(b"x-api-key", b"first"), (b"authorization", b"Bearer second")], b"first"),
    ],
)
def test_presented_key(sent: list[tuple[bytes, bytes]], found: bytes | None) -> None:
    assert presented_key(sent) == found


def test_no_keys_means_open_access() -> None:
    config = load_config_text(keyed(), "t.yaml", env={"UK": "x"})
    access = build_access(config)
    assert type(access) is OpenAccess
    assert access.authenticate([]) is None
    access.authorize(None, "/chat/a")
    access.check_admin([])
    access.check_status([])


def test_routes_are_matched_as_the_validator_compares_paths() -> None:
    config = load_config_text(
        keyed(api_keys=[{"name": "a", "key": KEY, "routes": ["/chat/b"]}]), "t.yaml", env={"UK": "x"}
    )
    access = build_access(config)
    assert isinstance(access, KeyAccess)
    principal = access.authenticate(headers(KEY))
    assert principal == "a"
    access.authorize(principal, "/chat/B")  # the table spells it /chat/B
    with pytest.raises(Forbidden):
        access.authorize(principal, "/chat/a")
    assert access.allowed_routes(principal) == frozenset({"/chat/B"})
    with pytest.raises(Unauthenticated) as info:
        access.authenticate(headers("not-the-key-0123456"))
    assert "not-the-key" not in info.value.message


def test_rate_limit_buckets_survive_a_reload_of_the_same_key() -> None:
    def config(limit: int) -> object:
        auth = {"api_keys": [{"name": "a", "key": KEY, "rate_limit_per_minute": limit}]}
        return load_config_text(keyed(**auth), "t.yaml", env={"UK": "x"})

    first = build_access(config(2))  # type: ignore[arg-type]
    for _ in range(2):
        first.authorize("a", "/chat/a")
    with pytest.raises(RateLimited) as info:
        first.authorize("a", "/chat/a")
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 30
    same = build_access(config(2), first)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        same.authorize("a", "/chat/a")
    changed = build_access(config(5), same)  # type: ignore[arg-type]
    changed.authorize("a", "/chat/a")  # a new limit starts a new bucket


def test_token_bucket_refills_continuously() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one a second, bursts of 60
    assert all(bucket.take() == 0.0 for _ in range(60))
    assert bucket.take() == pytest.approx(1.0)
    now[0] += 0.5
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 1000
    assert sum(bucket.take() == 0.0 for _ in range(100)) == 60


def test_admin_checks() -> None:
    admin_digest = hashlib.sha256(b"admin-0123456789abcdef").hexdigest()
    config = load_config_text(
        keyed(
            api_keys=[{"name": "a", "key": KEY}],
            admin_keys=[{"name": "ops", "key": f"sha256:{admin_digest}"}],
        ),
        "t.yaml",
        env={"UK": "x"},
    )
    access = build_access(config)
    access.check_admin(headers("admin-0123456789abcdef"))
    with pytest.raises(Unauthenticated):
        access.check_admin([])
    with pytest.raises(Forbidden):
        access.check_status(headers(KEY))
    with pytest.raises(Unauthenticated):
        access.authenticate(headers("admin-0123456789abcdef"))


def test_config_secrets_and_redaction() -> None:
    config = load_config_text(
        keyed(api_keys=[{"name": "a", "key": KEY}]).replace(
            "api_key: ${UK}", "api_key: ${UK}\n    headers: {Authorization: Basic cred-0123, X-Debug: '1'}"
        ),
        "t.yaml",
        env={"UK": "upstream-key-0123"},
    )
    secrets = config_secrets(config)
    assert secrets == {"upstream-key-0123", "Basic cred-0123", "cred-0123", "pw-0123456", KEY}
    redact = Redactor(secrets)
    assert redact("key upstream-key-0123 and 1 and cred-0123") == "key [REDACTED] and 1 and [REDACTED]"
    assert redact.value({"a": ["x pw-0123456"], "b": 3}) == {"a": ["x [REDACTED]"], "b": 3}
    assert Redactor()("nothing upstream-key-0123") == "nothing upstream-key-0123"
    assert public_url("http://u:pw@h:1/v1") == "http://u:[REDACTED]@h:1/v1"
    assert public_url("http://h:1/v1") == "http://h:1/v1"
