"""An OpenAI-compatible stream that says `[DONE]` before any choice finished was cut off, not complete.

llama-cpp-python's server does exactly this when another request arrives during a generation (its
`interrupt_requests`): two chunks of text, then `data: [DONE]` with no `finish_reason`. Passed on as a
clean end, the client would take half an answer for a whole one (Portkey-AI/gateway #1797 is that bug).
The upstream here is a real HTTP server on loopback that answers just that.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.router_server import RunningRouter, table


def _chunk(content: str, finish: str | None) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    finish: str | None = None  # the finish_reason of the last chunk (None: cut off)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        parts = [_chunk("Hello", None), _chunk(" there", self.finish), b"data: [DONE]\n\n"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(sum(map(len, parts))))
        self.end_headers()
        for part in parts:  # each its own read: the text reaches the client before the end comes
            self.wfile.write(part)
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[None, "stop"], ids=["cut_off", "finished"])
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    handler = type("Handler", (_Handler,), {"finish": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", request.param
    finally:
        server.shutdown()
        server.server_close()


def test_done_without_a_finish_reason_ends_with_the_error_event(upstream: tuple[str, str | None]) -> None:
    base_url, finish = upstream
    router = RunningRouter.from_yaml(
        table(
            {"u": {"type": "openai", "base_url": base_url, "stream_usage": False}},
            [{"path": "/chat/m", "model": "m", "upstream": "u", "max_retries": 0}],
        )
    )
    router.start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", router.url + "/chat/m", json=body, timeout=10) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    finally:
        router.stop()
    texts = [
        json.loads(event)["choices"][0]["delta"].get("content", "")
        for event in events
        if event != "[DONE]" and "choices" in json.loads(event)
    ]
    assert "".join(texts) == "Hello there"
    if finish == "stop":
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
        return
    assert "[DONE]" not in events, "a cut-off answer was passed off as complete"
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_connection_reset"
    assert "no finish_reason" in error["message"] and "--interrupt_requests False" in error["message"]
