"""Browser fixtures: Debian's Chromium driven by Playwright, headless, against a real router on loopback.

Playwright cannot download its own browsers here, so it drives the system's `/usr/bin/chromium`
(`ROUTER_CHROMIUM` overrides). Without it the browser tests fail in CI (CI=true), where a missing browser
is a broken set-up, and are skipped on a developer's machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

CHROMIUM = os.environ.get("ROUTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (each test gets its own context).

    Not per session: while Playwright's sync API is running it keeps an event loop on the main thread,
    and sync tests elsewhere that poll with `tests.fakes.wait_for` (which refuses to block a running
    loop) would fail after the first browser test.
    """
    if not Path(CHROMIUM).exists():
        _unavailable(
            f"{CHROMIUM} not found; install Debian's chromium (bash deploy/local/setup.sh, or "
            "apt-get install chromium) or set ROUTER_CHROMIUM to a Chromium binary"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing; pip install -e '.[test]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """`open_page(router, width=1200, height=800)`: a fresh browser context (empty localStorage) on the page.

    Page errors (uncaught exceptions, console errors) are collected in `page.errors` so tests can assert
    the page ran clean.
    """
    contexts: list[Any] = []

    def open_(router: RunningRouter, width: int = 1200, height: int = 800) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on(
            "console", lambda message: page.errors.append(message.text) if message.type == "error" else None
        )
        page.goto(router.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """`screenshot(page, name)` saves tests/artifacts/web/<name>.png (gitignored, kept by CI)."""

    def take(page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take


@pytest.fixture
def chat_router(
    fake_openai: FakeOpenAI, fake_ollama: FakeOllama, start_router: Callable[..., RunningRouter]
) -> RunningRouter:
    """/chat/local (fake OpenAI server, model smollm2) and /chat/qwen3 (fake Ollama, qwen3:32b)."""
    return start_router(
        table(
            upstreams={
                "local": {"type": "openai", "base_url": fake_openai.base_url},
                "ollama": {"type": "ollama", "base_url": fake_ollama.base_url},
            },
            routes=[
                {"path": "/chat/local", "model": "smollm2", "upstream": "local"},
                {"path": "/chat/qwen3", "model": "qwen3:32b", "upstream": "ollama"},
            ],
        )
    )
