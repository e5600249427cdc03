"""`router validate` refuses every table `router serve` would refuse, and the app's own paths are listed once.

The validator and the app share `router.config.reserved`; these tests build the real app to prove that
every path it registers is on that list, and that every table the validator accepts (the shipped ones,
and tables probing the edges of the list) can actually be served.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from router.app import TABLE_PATH
from router.config import ConfigError, RouterConfig, load_config, load_config_text
from router.config.reserved import reserved_owner
from router.runtime import Runtime
from tests.config.test_examples import REPO, AnyEnvironment, schema_tables
from tests.support.router_server import table

UPSTREAMS = {"u": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}


def one_route(path: str, name: str = "r") -> str:
    return table(UPSTREAMS, [{"path": path, "model": "m", "upstream": "u", "name": name}])


def build_app(config: RouterConfig) -> list[str]:
    """Provision the app exactly as serving would (without serving it), and its OpenAPI document (made
    on first request, so a problem there would only show as a 500 on /schema); the paths it registers
    itself, then the table's paths that Litestar's routing hands to the table's one handler."""
    prepared = Runtime(config).prepare(config)
    app = prepared.app
    assert app.openapi_schema.paths
    own = [route.path for route in app.routes if route.path != TABLE_PATH]
    served = [
        route.path
        for route in config.routes
        if app.asgi_router.handle_routing(route.path, "POST")[1].name == "table-routes"
    ]
    return own + served


def test_every_path_the_app_serves_itself_is_reserved() -> None:
    config = load_config_text(one_route("/chat/x"), "t.yaml", env={})
    own = [path for path in build_app(config) if path != "/chat/x"]
    assert "/schema" in own and "/healthz" in own and "/admin/reload" in own, own
    assert [path for path in own if reserved_owner(path) is None] == []


@pytest.mark.parametrize(
    "path",
    [
        "/schema",
        "/schema/openapi.json",
        "/Schema",
        "/api/chat",
        "/api/tags",
        "/v1/messages",
        "/v1",
        "/static/app.js",
        "/admin",
        "/sessions/x",
        "/ops/x",
        "/usage",
        "/healthz",
        "/READYZ",
        "/status",
        "/debug",
        "/events",
        "/metrics",
    ],
)
def test_reserved_paths_are_refused_by_the_validator(path: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config_text(one_route(path), "t.yaml", env={})
    assert "the router" in str(refused.value.problems[0]), refused.value.problems


@pytest.mark.parametrize("name", ["completions"])
def test_route_names_the_app_uses_itself_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config_text(one_route("/chat/x", name), "t.yaml", env={})
    assert "router's own" in str(refused.value.problems[0])
    with pytest.raises(ConfigError):
        load_config_text(one_route(f"/chat/{name}").replace("name: r\n", ""), "t.yaml", env={})


@pytest.mark.parametrize("name", ["models", "chat", "healthz", "list_models", "status", "x"])
def test_other_route_names_build(name: str) -> None:
    config = load_config_text(one_route("/chat/x", name), "t.yaml", env={})
    assert "/chat/x" in build_app(config)


@pytest.mark.parametrize(
    "path", ["/chat/x", "/schemas", "/apis/x", "/v1x", "/statics", "/healthz2", "/chat/schema", "/x/api/chat"]
)
def test_what_the_validator_accepts_the_app_builds(path: str) -> None:
    config = load_config_text(one_route(path), "t.yaml", env={})
    assert path in build_app(config)


@pytest.mark.parametrize("file", schema_tables(), ids=lambda file: str(file.relative_to(REPO)))
def test_every_shipped_table_the_validator_accepts_builds_an_app(file: Path) -> None:
    config = load_config(file, env=AnyEnvironment())
    paths = build_app(config)
    assert all(route.path in paths for route in config.routes)
