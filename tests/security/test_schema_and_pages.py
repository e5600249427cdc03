"""The OpenAPI document is for operators, and no page on the router's origin loads a third-party script.

The document lists every route, model and upstream: with keys configured it needs the admin key. The
chat page keeps the user's key in the browser on this origin, so nothing served here may pull scripts
from a CDN (Litestar's Swagger, Redoc and Elements pages did, without integrity checks): only the JSON
document is served. Static files are exactly those of `router/web/`; odd paths are a 404, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from router.api.web import WEB_DIR
from tests.fakes import FakeOllama
from tests.support.router_server import RunningRouter, table

CLIENT = "client-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
DOCUMENT_PATHS = ["/schema", "/schema/", "/schema/openapi.json"]
# Every page Litestar's render plugins would serve, and the other download formats.
SCHEMA_PAGES = [
    *DOCUMENT_PATHS,
    "/schema/swagger",
    "/schema/redoc",
    "/schema/elements",
    "/schema/rapidoc",
    "/schema/scalar",
    "/schema/stoplight",
    "/schema/openapi.yaml",
    "/schema/openapi.yml",
    "/schema/oauth2-redirect.html",
]
STATIC_FILES = sorted(p.relative_to(WEB_DIR).as_posix() for p in WEB_DIR.rglob("*") if p.is_file())

_REMOTE = r"""(?:https?:)?//"""
_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?""" + _REMOTE, re.IGNORECASE)
_STYLESHEET = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?""" + _REMOTE, re.IGNORECASE)
_JS_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']""" + _REMOTE)


def third_party_loads(response: httpx.Response) -> list[str]:
    """The remote scripts (and stylesheets) a page or a module would make the browser load."""
    kind = response.headers.get("content-type", "")
    text = response.text
    found = []
    if "html" in kind or text.lstrip().lower().startswith(("<!doctype", "<html")):
        found += _SCRIPT_SRC.findall(text) + _STYLESHEET.findall(text)
        for script in re.findall(r"<script\b[^>]*>(.*?)</script>", text, re.IGNORECASE | re.DOTALL):
            found += _JS_IMPORT.findall(script)
    if "javascript" in kind:
        found += _JS_IMPORT.findall(text)
    return found


def test_the_detector_sees_a_cdn_script() -> None:
    page = '<html><script src="https://cdn.example/swagger.js"></script><script type="module">'
    page += (
        'import x from "//cdn.example/x.js"</script><link rel="stylesheet" href="http://cdn.example/a.css">'
    )
    response = httpx.Response(200, text=page, headers={"content-type": "text/html"})
    assert len(third_party_loads(response)) == 3
    module = httpx.Response(
        200, text='import { a } from "./api.js";', headers={"content-type": "text/javascript"}
    )
    assert third_party_loads(module) == []


@pytest.fixture
def keyed_router(fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]) -> RunningRouter:
    return start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            auth={
                "api_keys": [{"name": "client", "key": CLIENT}],
                "admin_keys": [{"name": "ops", "key": ADMIN}],
            },
        )
    )


@pytest.mark.parametrize("path", DOCUMENT_PATHS)
def test_the_openapi_document_needs_the_admin_key(keyed_router: RunningRouter, path: str) -> None:
    url = keyed_router.url + path
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and "routes" not in anonymous.text
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert "OpenAPI document needs an admin key" in anonymous.json()["error"]["message"]
    client = httpx.get(url, headers={"Authorization": f"Bearer {CLIENT}"})
    assert client.status_code == 403 and "qwen3" not in client.text
    admin = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert admin.status_code == 200
    assert "/chat/qwen3" in admin.json()["paths"]


def test_with_client_keys_only_the_document_is_closed(
    fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[{"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"}],
            auth={"api_keys": [{"name": "client", "key": CLIENT}]},
        )
    )
    for headers in ({}, {"Authorization": f"Bearer {CLIENT}"}):
        assert httpx.get(router.url + "/schema/openapi.json", headers=headers).status_code in (401, 403)


def test_without_keys_the_document_stays_open(both_upstreams_router: RunningRouter) -> None:
    # No keys: the router listens on loopback only (or behind an authenticating proxy), like /admin.
    document = httpx.get(both_upstreams_router.url + "/schema/openapi.json")
    assert document.status_code == 200 and "/chat/local" in document.json()["paths"]


@pytest.mark.parametrize("path", SCHEMA_PAGES)
def test_no_schema_page_loads_a_third_party_script(keyed_router: RunningRouter, path: str) -> None:
    response = httpx.get(keyed_router.url + path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code < 500
    assert third_party_loads(response) == [], path
    if path not in DOCUMENT_PATHS:
        assert response.status_code == 404  # the documentation sites are not served at all


def test_no_page_the_router_serves_loads_a_third_party_script(both_upstreams_router: RunningRouter) -> None:
    router = both_upstreams_router
    pages = ["/", *SCHEMA_PAGES, *(f"/static/{name}" for name in STATIC_FILES)]
    served = 0
    for path in pages:
        response = httpx.get(router.url + path)
        assert response.status_code < 500, path
        assert third_party_loads(response) == [], path
        served += response.status_code == 200
    assert served >= len(STATIC_FILES) + 1 + len(DOCUMENT_PATHS)  # the files were there to be checked


@pytest.mark.parametrize(
    "path",
    [
        "/static/%00",
        "/static/app.js%00",
        "/static/a%00b.js",
        "/static/vendor/%00/x",
        "/static/" + "a" * 300,  # longer than a file name may be
        "/static/" + "a/" * 3000,
        "/static/",
        "/static/vendor",
        "/static/../README.md",
        "/static/%2e%2e/app.py",
        "/static/nothing.js",
    ],
)
def test_odd_static_paths_are_a_404_never_a_500(both_upstreams_router: RunningRouter, path: str) -> None:
    response = httpx.get(both_upstreams_router.url + path)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert response.json()["error"]["type"] == "not_found_error"


def test_the_static_files_are_still_served(both_upstreams_router: RunningRouter) -> None:
    for name in ("app.js", "style.css", "vendor/marked.esm.js"):
        response = httpx.get(both_upstreams_router.url + "/static/" + name)
        assert response.status_code == 200 and response.content == (WEB_DIR / name).read_bytes()
    assert httpx.head(both_upstreams_router.url + "/static/app.js").status_code == 200
