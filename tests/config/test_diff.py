"""`diff_configs`: every section of the table is compared, entry by entry, and secrets are never shown."""

from __future__ import annotations

from typing import Any

from router.config import RouterConfig, load_config_text
from router.config.diff import diff_configs
from router.config.models import FrozenModel
from tests.support.router_server import table

UPSTREAMS = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}
ROUTES = [{"path": "/chat/a", "model": "m", "upstream": "u"}]
ALICE = "alice-key-0123456789"


def config(
    upstreams: dict[str, Any] | None = None, routes: list[Any] | None = None, **top: Any
) -> RouterConfig:
    return load_config_text(table(upstreams or UPSTREAMS, routes or ROUTES, **top), "t.yaml", env={})


def test_the_same_table_is_no_change() -> None:
    assert diff_configs(config(), config()) == []


def test_auth_changes_are_reported_without_the_keys() -> None:
    old = config(auth={"api_keys": [{"name": "alice", "key": ALICE}]})
    new = config(
        auth={
            "public_status": True,
            "api_keys": [{"name": "alice", "key": ALICE + "x", "rate_limit_per_minute": 10}],
            "admin_keys": [{"name": "ops", "key": "ops-key-0123456789"}],
        }
    )
    lines = diff_configs(old, new)
    assert "~ auth: public_status: False -> True" in lines
    assert "~ auth: api_keys[alice].key: changed (secret, not shown)" in lines
    assert "~ auth: api_keys[alice].rate_limit_per_minute: None -> 10" in lines
    assert "~ auth: admin_keys[ops]: added" in lines
    assert not any(ALICE in line or "ops-key" in line for line in lines), lines
    assert "~ auth: api_keys[alice]: removed" in diff_configs(new, config(auth={"api_keys": []}))


def test_logging_sessions_and_server_sections_are_reported() -> None:
    new = config(
        logging={"level": "debug", "file": "/tmp/x.log"},
        sessions={"enabled": False},
        server={"port": 9999},
    )
    lines = diff_configs(config(), new)
    assert "~ logging: level: info -> debug" in lines
    assert "~ logging: file: None -> /tmp/x.log" in lines
    assert "~ sessions: enabled: True -> False" in lines
    assert "~ server: port: 8080 -> 9999 (needs a restart)" in lines
    assert len(lines) == 4, lines


def test_upstreams_and_routes_by_entry() -> None:
    upstreams = {
        **UPSTREAMS,
        "v": {"type": "ollama", "base_url": "http://127.0.0.1:8/", "headers": {"X": "1"}},
    }
    routes = [{**ROUTES[0], "upstreams": [{"name": "u", "weight": 2}], "fallbacks": ["/chat/b"]}]
    del routes[0]["upstream"]
    routes.append({"path": "/chat/b", "model": "n", "upstream": "v"})
    lines = diff_configs(config(), config(upstreams, routes))
    assert "+ upstream v (http://127.0.0.1:8/)" in lines
    assert "+ route /chat/b (n)" in lines
    assert "~ route /chat/a: upstreams[u].weight: 1 -> 2" in lines
    assert "~ route /chat/a: fallbacks: [] -> [/chat/b]" in lines
    changed = dict(upstreams, v={**upstreams["v"], "headers": {"X": "2", "Y": "3"}})
    lines = diff_configs(config(upstreams, routes), config(changed, routes))
    assert lines == ["~ upstream v: headers[Y]: added", "~ upstream v: headers[X]: 1 -> 2"]


def test_a_section_added_to_the_model_later_is_compared_too() -> None:
    """The differ walks the models: a new top-level section (another engineer's) needs no change here."""

    class Usage(FrozenModel):
        enabled: bool = False
        quota: int = 10

    class Extended(RouterConfig):
        usage: Usage = Usage()

    base = config().model_dump()
    old = Extended.model_validate(base)
    new = Extended.model_validate({**base, "usage": {"enabled": True, "quota": 20}})
    assert diff_configs(old, new) == ["~ usage: enabled: False -> True", "~ usage: quota: 10 -> 20"]
