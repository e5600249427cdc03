"""The resume benchmark's own pieces: its upstream breaks and continues as it says, a router resuming through
it passes the benchmark's checks (over real sockets), and the in-process measure serves whole streams
(tests/perf/resume.py, tests/perf/resume_micro.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.perf import resume_micro
from tests.perf.resume import resume_round, router_config, tags
from tests.perf.resume_upstream import BREAK_CHUNKS, CONT_CHUNKS
from tests.support.router_server import RunningRouter

ROOT = Path(__file__).resolve().parents[2]
TTFT = 0.05


@pytest.fixture
def upstream() -> Iterator[int]:
    """tests/perf/resume_upstream.py on a free port, waiting TTFT before a continuation."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    argv = [sys.executable, "-m", "tests.perf.resume_upstream", "--port", str(port), "--ttft", str(TTFT)]
    proc = subprocess.Popen(argv, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the resume upstream did not come up"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def events_of(raw: bytes) -> list[tuple[float, bytes]]:
    return [(0.0, e) for e in raw.split(b"\n\n") if e.strip()]


def test_it_breaks_mid_body(upstream: int) -> None:
    url = f"http://127.0.0.1:{upstream}/v1/chat/completions"
    body = {"model": "break", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", url, json=body, timeout=10) as r:
        for data in r.iter_raw():
            received += data
    assert [t for _, t in tags(events_of(received))] == [f"b{i}" for i in range(BREAK_CHUNKS)]
    assert b"[DONE]" not in received


def test_it_continues_a_final_assistant_message_after_its_ttft(upstream: int) -> None:
    url = f"http://127.0.0.1:{upstream}/v1/chat/completions"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "@0 b0 "}]
    started = time.perf_counter()
    response = httpx.post(url, json={"model": "x", "stream": True, "messages": messages}, timeout=10)
    assert time.perf_counter() - started >= TTFT
    assert [t for _, t in tags(events_of(response.content))] == [f"c{i}" for i in range(CONT_CHUNKS)]
    assert response.content.endswith(b"data: [DONE]\n\n")


def test_a_router_resuming_through_it_passes_the_benchmarks_checks(upstream: int, tmp_path: Path) -> None:
    config = router_config(upstream, upstream, tmp_path / "requests.log")
    with RunningRouter.from_yaml(json.dumps(config)) as router:
        got = asyncio.run(
            resume_round(router.url + "/chat/resume", f"http://127.0.0.1:{upstream}/v1/chat/completions", 2)
        )
    # resume_round raised unless each answer was the 20 partial chunks then the 20 continued ones, one
    # finish_reason, [DONE]; the seam holds the continuing upstream's wait
    assert len(got["seam"]) == len(got["direct"]) == 2
    assert all(ms >= TTFT * 1000 for ms in got["seam"] + got["direct"])


def test_the_in_process_measure_serves_whole_streams_on_both_routes() -> None:
    per = resume_micro.run(rounds=2, streams=3)  # raises unless every stream ended with [DONE]
    assert len(per["on"]) == len(per["off"]) == 2  # each round serves both routes
    assert all(us > 0 for us in per["on"] + per["off"])
