"""How the router serves the page (no browser needed): paths, headers, and that nothing is shadowed."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from router.api.web import WEB_DIR
from tests.support.router_server import RunningRouter

VENDOR = WEB_DIR / "vendor"


def test_the_page_is_served_at_the_root_with_a_strict_policy(chat_router: RunningRouter) -> None:
    page = httpx.get(chat_router.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="static/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_file_the_page_loads_is_served_from_the_router(chat_router: RunningRouter) -> None:
    for name in ("app.js", "api.js", "sse.js", "store.js", "health.js", "errors.js", "markdown.js"):
        reply = httpx.get(f"{chat_router.url}/static/{name}")
        assert reply.status_code == 200, name
        assert "javascript" in reply.headers["content-type"], name
        for imported in re.findall(r'from "\./([^"]+)"', reply.text):
            assert httpx.get(f"{chat_router.url}/static/{imported}").status_code == 200, imported
    css = httpx.get(chat_router.url + "/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "no-cache" in css.headers["cache-control"]
    assert httpx.get(chat_router.url + "/static/..%2fsessions.py").status_code == 404  # no way out of web/


def test_the_page_shadows_no_api_path(chat_router: RunningRouter) -> None:
    chat = httpx.post(chat_router.url + "/chat/local", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    assert httpx.get(chat_router.url + "/v1/models").json()["object"] == "list"
    assert "routes" in httpx.get(chat_router.url + "/status").json()
    unknown = httpx.post(chat_router.url + "/nowhere", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    assert httpx.get(chat_router.url + "/chat/local").status_code == 405  # a route path stays POST-only
    paths = httpx.get(chat_router.url + "/schema/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_the_vendored_versions_are_the_recorded_ones() -> None:
    readme = (VENDOR / "README.md").read_text()
    recorded = dict(re.findall(r"^\| (marked|dompurify) \| ([0-9.]+) \|", readme, re.M))
    marked_head = (VENDOR / "marked.esm.js").read_text()[:200]
    purify_head = (VENDOR / "purify.es.mjs").read_text()[:200]
    assert f"marked v{recorded['marked']} " in marked_head
    assert f"DOMPurify {recorded['dompurify']} " in purify_head
    for licence in ("marked.LICENSE.md", "dompurify.LICENSE", "dompurify.LICENSE-MPL"):
        assert (VENDOR / licence).stat().st_size > 1000, licence


def test_no_file_of_the_page_loads_anything_from_elsewhere() -> None:
    for file in Path(WEB_DIR).glob("*.*"):
        if file.suffix in {".js", ".css", ".html"}:
            assert not re.search(r"(src|href)=\"https?://", file.read_text()), file.name
            assert "import(" not in file.read_text(), file.name
