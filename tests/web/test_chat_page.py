"""The chat page in a real browser against a real router and fake model servers.

Each test drives headless Chromium the way a user would (type, Enter, click Stop) and checks both what
the page shows and what the model server saw (disconnects, the history it was sent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import FakeOllama, FakeOpenAI
from tests.support.router_server import RunningRouter, table

pytestmark = pytest.mark.browser

ANSWER = ".msg-assistant"


def eventually(page: Any, predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll a condition on the Python side (the fakes' recordings) while the browser keeps running.

    `tests.fakes.wait_for` refuses to run here: Playwright's sync API keeps an event loop on this thread.
    """
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        page.wait_for_timeout(20)
    assert predicate(), f"not true within {timeout}s"


def wait_last_answer(page: Any, state: str) -> None:
    page.wait_for_function(
        "s => [...document.querySelectorAll('.msg-assistant')].at(-1)?.dataset.state === s", arg=state
    )


def ask(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def stored_messages(page: Any) -> list[dict[str, Any]]:
    """The current conversation as the page keeps it (what it will send next time)."""
    return page.evaluate("window.routerChat.state.conversations.current().messages")  # type: ignore[no-any-return]


def select_route(page: Any, path: str) -> None:
    page.select_option("#route", path)


def test_answer_streams_token_by_token(
    chat_router: RunningRouter, fake_openai: FakeOpenAI, open_page: Callable[..., Any], screenshot: Any
) -> None:
    fake_openai.reply_tokens = 25
    fake_openai.chunk_delay = 0.08
    page = open_page(chat_router)
    select_route(page, "/chat/local")
    ask(page, "Count for me")

    # Part of the answer is on screen while it is still marked as streaming: tokens arrive as they are made.
    page.wait_for_function(
        """() => {
            const answer = document.querySelector('.msg-assistant');
            return answer && answer.dataset.state === 'streaming'
                && answer.querySelector('.content').textContent.includes('tok3');
        }"""
    )
    streaming = page.locator(ANSWER)
    assert streaming.locator(".marker").inner_text() == "streaming…"
    assert streaming.get_attribute("aria-busy") == "true"
    assert "tok24" not in streaming.inner_text()
    assert page.is_enabled("#stop") and not page.is_enabled("#send")
    screenshot(page, "01-streaming")

    page.wait_for_selector(".msg-assistant[data-state=done]")
    text = page.inner_text(".msg-assistant .content")
    assert text.startswith("tok0 tok1") and text.rstrip().endswith("tok24")
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    assert fake_openai.last_request.json["stream"] is True
    assert fake_openai.last_request.json["messages"] == [{"role": "user", "content": "Count for me"}]
    assert page.errors == []


def test_stop_keeps_the_partial_answer_and_the_next_question_continues_from_it(
    chat_router: RunningRouter, fake_ollama: FakeOllama, open_page: Callable[..., Any], screenshot: Any
) -> None:
    fake_ollama.reply_tokens = 200
    fake_ollama.chunk_delay = 0.1
    page = open_page(chat_router)
    select_route(page, "/chat/qwen3")
    ask(page, "Tell me a long story")
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .content')?.textContent.includes('tok3')"
    )
    page.click("#stop")

    # The browser aborted the request; the router closed the upstream connection: generation cancelled.
    eventually(page, lambda: fake_ollama.disconnects == 1)
    page.wait_for_selector(".msg-assistant[data-state=interrupted]")
    assert page.inner_text(".msg-assistant .marker") == "interrupted"
    partial = stored_messages(page)[1]
    assert partial["role"] == "assistant" and partial["state"] == "interrupted"
    assert partial["content"].startswith("tok0 tok1 tok2 tok3")
    assert "tok199" not in partial["content"]
    assert page.is_enabled("#send")
    screenshot(page, "02-interrupted")

    fake_ollama.reply_tokens = 3
    fake_ollama.chunk_delay = 0.0
    ask(page, "Go on, but shorter")
    wait_last_answer(page, "done")
    assert fake_ollama.last_request.json["messages"] == [
        {"role": "user", "content": "Tell me a long story"},
        {"role": "assistant", "content": partial["content"]},
        {"role": "user", "content": "Go on, but shorter"},
    ]
    assert page.locator(ANSWER).count() == 2
    assert page.errors == []


def test_health_badge_and_banners_follow_the_model_without_reloading(
    fake_ollama: FakeOllama,
    start_router: Callable[..., RunningRouter],
    open_page: Callable[..., Any],
    screenshot: Any,
) -> None:
    fast_checks = {
        "enabled": True,
        "interval": 0.2,
        "recovery_interval": 0.2,
        "timeout": 0.5,
        "failure_threshold": 1,
        "recovery_threshold": 1,
        "jitter": 0,
    }
    router = start_router(
        table(
            upstreams={"ollama": {"type": "ollama", "base_url": fake_ollama.base_url}},
            routes=[
                {
                    "path": "/chat/qwen3",
                    "model": "qwen3:32b",
                    "upstream": "ollama",
                    "health_check": fast_checks,
                }
            ],
        )
    )
    page = open_page(router)
    page.wait_for_selector("#route-health[data-state=healthy]")
    assert page.inner_text("#route-health") == "healthy"
    assert page.is_hidden("#banner")
    page.evaluate("window.__sameDocument = true")

    fake_ollama.go_down()
    page.wait_for_selector("#route-health[data-state=unavailable]")
    page.wait_for_selector("#banner[data-kind=down]")
    assert "qwen3:32b is unavailable" in page.inner_text("#banner")
    assert page.inner_text("#route-health") == "down"
    assert "(down)" in page.inner_text("#route option[value='/chat/qwen3']")
    screenshot(page, "03-model-down")

    fake_ollama.come_up()
    page.wait_for_selector("#route-health[data-state=healthy]")
    page.wait_for_selector("#banner[data-kind=up]")
    assert page.inner_text("#banner-text") == "qwen3:32b is back."
    assert page.evaluate("window.__sameDocument") is True  # no reload: the page learnt it from /events
    assert page.inner_text("#live") == "live"
    screenshot(page, "04-model-back")


def test_debug_shows_the_route_status_instead_of_asking_the_model(
    chat_router: RunningRouter, fake_openai: FakeOpenAI, open_page: Callable[..., Any], screenshot: Any
) -> None:
    page = open_page(chat_router)
    select_route(page, "/chat/local")
    ask(page, "/debug")
    note = page.wait_for_selector(".msg-note")
    text = note.inner_text()
    assert "local (/chat/local)" in text and "model smollm2" in text and "state healthy" in text
    headers = page.locator(".msg-note th").all_inner_texts()
    assert headers == ["upstream", "health", "breaker", "latency", "in flight", "queued"]
    cells = page.locator(".msg-note td").all_inner_texts()
    assert cells[0] == "local" and cells[2] == "closed" and cells[4] == "0"
    assert fake_openai.chat_count == 0
    assert page.locator(".msg-user").count() == 0  # "/debug" is a command, not a question
    assert page.input_value("#prompt") == ""
    screenshot(page, "05-debug")


HOSTILE_MARKDOWN = """\
## Result

Here is **bold**, `inline code` and a table:

| a | b |
|---|---|
| 1 | 2 |

```python
def double(x):
    return x * 2  # <b>not bold</b>
```

<img src=x onerror="window.__pwned = 'img'">

<script>window.__pwned = 'script'</script>

Inline <b onmouseover="window.__pwned = 'hover'">hover me</b> and [a link](javascript:window.__pwned='link')
and [a real one](https://example.org/docs).
"""


def test_markdown_is_rendered_and_model_html_is_inert(
    chat_router: RunningRouter, fake_openai: FakeOpenAI, open_page: Callable[..., Any], screenshot: Any
) -> None:
    fake_openai.reply_text = HOSTILE_MARKDOWN
    page = open_page(chat_router)
    select_route(page, "/chat/local")
    ask(page, "Show me Markdown")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    answer = page.locator(ANSWER)

    # Markdown is rendered...
    assert answer.locator("h2").inner_text() == "Result"
    assert answer.locator("strong").inner_text() == "bold"
    assert answer.locator("table td").all_inner_texts() == ["1", "2"]
    code = answer.locator("pre code.language-python")
    assert "return x * 2  # <b>not bold</b>" in code.inner_text()
    assert answer.locator("pre b").count() == 0
    # ...and nothing the model wrote became live markup: no element, no handler, no script ran.
    assert answer.locator("img, script, iframe, [onerror], [onmouseover], [onclick]").count() == 0
    assert answer.locator("b").count() == 0
    assert answer.locator("a[href^='javascript']").count() == 0
    assert answer.locator("a[href='https://example.org/docs']").get_attribute("rel") == (
        "noopener noreferrer nofollow"
    )
    shown = answer.inner_text()
    assert "<img src=x onerror=\"window.__pwned = 'img'\">" in shown  # shown as text, as written
    assert "<script>window.__pwned = 'script'</script>" in shown
    answer.get_by_text("hover me").hover()
    answer.get_by_text("a link").click()
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    screenshot(page, "06-markdown")
    assert page.errors == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("rate_limited", "Rate-limited"),
        ("unavailable", "The model is unavailable right now."),
        ("timeout", "The model took too long to answer (timeout)."),
    ],
)
def test_errors_are_shown_in_plain_words_with_a_retry_button(
    case: str,
    expected: str,
    fake_openai: FakeOpenAI,
    start_router: Callable[..., RunningRouter],
    open_page: Callable[..., Any],
    screenshot: Any,
) -> None:
    router = start_router(
        table(
            upstreams={"local": {"type": "openai", "base_url": fake_openai.base_url}},
            routes=[{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            defaults={"timeout": 0.5, "max_retries": 1},
        )
    )
    page = open_page(router)
    if case == "rate_limited":
        fake_openai.set_behaviour("status", code=429, retry_after=7)
    elif case == "unavailable":
        fake_openai.go_down()
    else:
        fake_openai.set_behaviour("slow_first_token", seconds=3)
    ask(page, "Hello?")
    error = page.wait_for_selector(".msg-error")
    assert error.get_attribute("role") == "alert"
    assert expected in page.inner_text(".msg-error .error-title")
    if case == "rate_limited":
        assert page.inner_text(".msg-error .error-hint") == "Wait 7 s, then retry."
    assert page.locator(ANSWER).count() == 0  # no empty answer left behind
    screenshot(page, f"07-error-{case}")

    if case == "unavailable":
        fake_openai.come_up()
    fake_openai.set_behaviour("normal")
    page.click(".msg-error button.retry")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    assert page.locator(".msg-error").count() == 0
    assert fake_openai.last_request.json["messages"] == [{"role": "user", "content": "Hello?"}]


def test_an_error_in_the_middle_of_an_answer_keeps_what_arrived(
    chat_router: RunningRouter, fake_openai: FakeOpenAI, open_page: Callable[..., Any]
) -> None:
    fake_openai.set_behaviour("error_line", after=3, message="the GPU fell over")
    fake_openai.chunk_delay = 0.05  # the answer has started when the error comes (not a plain 502)
    page = open_page(chat_router)
    select_route(page, "/chat/local")
    ask(page, "Hello?")
    page.wait_for_selector(".msg-error")
    assert page.get_attribute(ANSWER, "data-state") == "failed"
    assert page.inner_text(".msg-assistant .marker") == "cut off"
    assert page.inner_text(".msg-assistant .content").startswith("tok0 tok1")
    assert "the GPU fell over" in (page.text_content(".msg-error details code") or "")
    fake_openai.set_behaviour("normal")
    page.click(".msg-error button.retry")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    # Retrying replaces the cut-off answer instead of sending it as context.
    assert page.locator(ANSWER).count() == 1
    assert fake_openai.last_request.json["messages"] == [{"role": "user", "content": "Hello?"}]


def test_conversations_are_kept_in_the_browser(
    chat_router: RunningRouter, fake_openai: FakeOpenAI, open_page: Callable[..., Any]
) -> None:
    page = open_page(chat_router)
    select_route(page, "/chat/local")
    page.fill("#prompt", "first line")
    page.press("#prompt", "Shift+Enter")  # a new line, not a send
    page.type("#prompt", "second line")
    assert fake_openai.chat_count == 0
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    assert page.inner_text(".msg-user .content") == "first line\nsecond line"

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    ask(page, "Another topic")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    titles = page.locator("#conversations button").all_inner_texts()
    assert titles == ["Another topic", "first line second line"]

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#conversations button").all_inner_texts() == titles
    assert page.inner_text("#conversation-title") == "Another topic"
    page.click("#conversations button >> text=first line second line")
    assert page.inner_text(".msg-user .content") == "first line\nsecond line"
    assert page.get_attribute("#conversations li:nth-child(2) button", "aria-current") == "true"

    page.click("#clear-chat")
    assert page.locator(".msg").count() == 0
    page.click("#delete-chat")
    assert page.locator("#conversations button").all_inner_texts() == ["Another topic"]


def test_keyboard_only_use(chat_router: RunningRouter, open_page: Callable[..., Any]) -> None:
    page = open_page(chat_router)
    assert page.evaluate("document.activeElement.id") == "prompt"  # ready to type
    for control in ("route", "prompt", "api-key"):
        label = page.locator(f"label[for='{control}']")
        assert label.count() == 1 and (label.text_content() or "").strip()
    assert page.get_attribute("#messages", "aria-live") == "polite"
    # Tab order follows the layout: model picker, conversations, then the conversation and the composer.
    page.focus("#route")
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert order.index("new-chat") < order.index("messages") < order.index("prompt") < order.index("send")
    page.focus("#prompt")
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-state=done]")


def test_narrow_screen(chat_router: RunningRouter, open_page: Callable[..., Any], screenshot: Any) -> None:
    page = open_page(chat_router, width=390, height=760)
    ask(page, "Hi from a phone")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_hidden("#sidebar") and page.is_visible("#toggle-sidebar")
    assert page.is_visible("#prompt") and page.is_visible("#send") and page.is_visible("#route")
    screenshot(page, "08-narrow")
    page.click("#toggle-sidebar")
    assert page.is_visible("#sidebar")
    assert page.get_attribute("#toggle-sidebar", "aria-expanded") == "true"
    screenshot(page, "09-narrow-conversations")
    page.click("#conversations button")
    assert page.is_hidden("#sidebar")


def test_with_api_keys_the_page_asks_for_one(
    fake_openai: FakeOpenAI, start_router: Callable[..., RunningRouter], open_page: Callable[..., Any]
) -> None:
    key = "page-key-0123456789abcdef"
    router = start_router(
        table(
            upstreams={"local": {"type": "openai", "base_url": fake_openai.base_url}},
            routes=[{"path": "/chat/local", "model": "smollm2", "upstream": "local"}],
            auth={"api_keys": [{"name": "page", "key": key}], "public_status": True},
        )
    )
    page = open_page(router)
    page.wait_for_selector("#banner[data-kind=error]")
    assert "did not accept your API key" in page.inner_text("#banner")

    page.click(".settings summary")
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#route option[value='/chat/local']", state="attached")
    assert page.is_hidden("#banner")
    # With a key, /events is read through fetch (EventSource cannot send headers): still live.
    page.wait_for_selector("#route-health[data-state=healthy]")
    assert page.inner_text("#live") == "live"
    ask(page, "hello with a key")
    page.wait_for_selector(".msg-assistant[data-state=done]")
    assert fake_openai.chat_count == 1
