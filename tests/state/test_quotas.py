"""Daily quotas per client key (`requests_per_day`, `tokens_per_day`), `GET /usage` and `router usage`.

Over real sockets: one router on `state.backend: memory` (with its clock moved to just before midnight to
check `Retry-After` and the day's reset), and two `router serve` processes sharing a real redis-server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from router.state.usage import until_midnight, utc_day
from router.usage_cli import ADMIN_KEY_ENV as ADMIN_ENV
from tests.fakes import FakeOpenAI, wait_for
from tests.fakes._base import count_prompt_tokens
from tests.state.conftest import RedisServer
from tests.support.router_server import RunningRouter, ServeProcess, table

CAPPED = "capped-key-0123456789"
FRUGAL = "frugal-key-0123456789"
FREE = "free-key-0123456789"
ADMIN = "admin-key-0123456789"
MESSAGES = [{"role": "user", "content": "one two three"}]
ANSWER_TOKENS = count_prompt_tokens(MESSAGES) + 5  # the fake's prompt count plus its 5 completion tokens


def keys(requests_per_day: int = 3, tokens_per_day: int = ANSWER_TOKENS + 2) -> dict[str, Any]:
    return {
        "api_keys": [
            {"name": "capped", "key": CAPPED, "requests_per_day": requests_per_day},
            {"name": "frugal", "key": FRUGAL, "tokens_per_day": tokens_per_day},
            {"name": "free", "key": FREE},
        ],
        "admin_keys": [{"name": "ops", "key": ADMIN}],
    }


def quota_table(fake: FakeOpenAI, state: dict[str, Any] | None = None, **auth: Any) -> str:
    return table(
        {"u": {"type": "openai", "base_url": fake.base_url}},
        [
            {"path": "/chat/a", "model": "smollm2", "upstream": "u"},
            {"path": "/chat/b", "model": "smollm2", "upstream": "u"},
        ],
        auth=keys(**auth),
        **({"state": state} if state else {}),
    )


def post(url: str, key: str, path: str = "/chat/a", stream: bool = False) -> httpx.Response:
    with httpx.Client(timeout=10) as fresh:  # a new connection: any worker may take it
        return fresh.post(
            url + path,
            json={"messages": MESSAGES, "stream": stream},
            headers={"Authorization": f"Bearer {key}"},
        )


def usage(url: str, key: str = ADMIN, days: int = 7) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}/usage?days={days}", headers=headers, timeout=10)


def check_refusal(response: httpx.Response, now: float) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "quota_exceeded")
    assert "00:00 UTC" in error["message"]
    retry_after = int(response.headers["Retry-After"])
    assert abs(retry_after - until_midnight(now)) <= 2, (retry_after, until_midnight(now))


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(["smollm2"]) as server:
        yield server


# ---- one process, memory -----------------------------------------------------------------------------


def test_requests_per_day_refuses_until_midnight_and_others_go_on(
    fake: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(quota_table(fake))
    assert [post(router.url, CAPPED).status_code for _ in range(3)] == [200, 200, 200]
    chats = fake.chat_count
    check_refusal(post(router.url, CAPPED, "/chat/b"), time.time())  # per key, whatever the route
    check_refusal(post(router.url, CAPPED, stream=True), time.time())
    assert fake.chat_count == chats  # refused before dispatch
    assert post(router.url, FREE).status_code == 200


def test_the_day_ends_at_utc_midnight(fake: FakeOpenAI, start_router: Callable[..., RunningRouter]) -> None:
    router = start_router(quota_table(fake, requests_per_day=1))
    ledger = router.runtime.usage
    midnight = (time.time() // 86400 + 1) * 86400
    now = [midnight - 30.0]
    router.sync(lambda: setattr(ledger, "clock", lambda: now[0]))
    assert post(router.url, CAPPED).status_code == 200
    refused = post(router.url, CAPPED)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    now[0] = midnight + 1  # a new UTC day: the quota starts again
    assert post(router.url, CAPPED).status_code == 200
    days = usage(router.url).json()["days"]
    assert [d["date"] for d in days[:2]] == [utc_day(midnight + 1), utc_day(midnight - 30)]
    assert days[0]["keys"]["capped"]["requests"] == 1 and days[1]["keys"]["capped"]["requests"] == 1


def test_tokens_per_day_counts_answers_and_overshoots_by_at_most_one(
    fake: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(quota_table(fake))  # tokens_per_day: one answer and a bit
    assert post(router.url, FRUGAL).status_code == 200  # 0 used: admitted
    assert post(router.url, FRUGAL, stream=True).status_code == 200  # one answer used, under the quota
    check_refusal(post(router.url, FRUGAL), time.time())
    quotas = usage(router.url).json()["quotas"]["frugal"]["tokens_per_day"]
    assert quotas == {"limit": ANSWER_TOKENS + 2, "used": 2 * ANSWER_TOKENS}  # over by less than one answer


def test_usage_is_for_admins_and_counts_per_key_and_route(
    fake: FakeOpenAI, start_router: Callable[..., RunningRouter]
) -> None:
    router = start_router(quota_table(fake))
    post(router.url, FREE, "/chat/a")
    post(router.url, FREE, "/chat/b", stream=True)
    post(router.url, FREE, "/chat/b")
    post(router.url, CAPPED, "/chat/a")
    post(router.url, "not-a-key-0123456789")  # refused at the door: not counted
    assert usage(router.url, key="").status_code == 401
    assert usage(router.url, key=FREE).status_code == 403
    assert usage(router.url, days=9).status_code == 400
    answer = usage(router.url)
    assert answer.status_code == 200
    today = answer.json()["days"][0]
    assert today["date"] == utc_day(time.time())
    free = today["keys"]["free"]
    assert free["requests"] == 3 and free["total_tokens"] == 3 * ANSWER_TOKENS
    assert free["routes"]["/chat/b"] == {
        "requests": 2,
        "prompt_tokens": 2 * count_prompt_tokens(MESSAGES),
        "completion_tokens": 10,
        "total_tokens": 2 * ANSWER_TOKENS,
        "estimated_tokens": 0,
    }
    assert set(today["keys"]) == {"free", "capped"}
    assert answer.json()["quotas"]["capped"]["requests_per_day"] == {"limit": 3, "used": 1}
    assert "free" not in answer.json()["quotas"]
    metrics = httpx.get(router.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert 'router_quota_used{key="capped",quota="requests_per_day"} 1.0' in metrics
    assert 'router_quota_limit{key="capped",quota="requests_per_day"} 3.0' in metrics
    assert 'router_quota_limit{key="frugal",quota="tokens_per_day"}' in metrics


def test_a_reload_changes_a_quota_without_resetting_the_count(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(quota_table(fake, requests_per_day=2))
    with RunningRouter.from_file(str(path)) as router:
        assert [post(router.url, CAPPED).status_code for _ in range(3)] == [200, 200, 429]
        path.write_text(quota_table(fake, requests_per_day=4))
        reloaded = httpx.post(router.url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reloaded.status_code == 200, reloaded.text
        assert [post(router.url, CAPPED).status_code for _ in range(3)] == [200, 200, 429]  # 2 + 2, not 4
        assert usage(router.url).json()["quotas"]["capped"]["requests_per_day"]["used"] == 4


def test_router_usage_prints_the_table(
    fake: FakeOpenAI, start_router: Callable[..., RunningRouter], tmp_path: Path
) -> None:
    router = start_router(quota_table(fake))
    post(router.url, CAPPED, "/chat/b")
    command = [sys.executable, "-m", "router", "usage", "--url", router.url, "--admin-key", ADMIN]
    out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "DATE",
        "KEY",
        "ROUTE",
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
        "TOTAL",
        "ESTIMATED",
    ]
    row = [utc_day(time.time()), "capped", "/chat/b", "1", str(count_prompt_tokens(MESSAGES)), "5"]
    assert lines[1].split() == [*row, str(ANSWER_TOKENS), "0"]
    assert ["capped", "requests_per_day", "1", "3", "2"] == next(
        line.split()[:5] for line in lines if line.startswith("capped")
    )
    denied = subprocess.run([*command[:-1], FREE], capture_output=True, text=True, timeout=30)
    assert denied.returncode == 1 and "403" in denied.stderr and "admin key" in denied.stderr
    # without --url: the address of the table's server block
    served = tmp_path / "served.yaml"
    served.write_text(quota_table(fake) + f"server:\n  host: 127.0.0.1\n  port: {router.port}\n")
    by_table = [sys.executable, "-m", "router", "usage", "--config", str(served), "--json"]
    found = subprocess.run(
        by_table, capture_output=True, text=True, timeout=30, env={**os.environ, ADMIN_ENV: ADMIN}
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["days"][0]["keys"]["capped"]["requests"] == 1


# ---- two processes, one Redis --------------------------------------------------------------------------


def test_quotas_hold_across_processes_sharing_redis(fake: FakeOpenAI, tmp_path: Path) -> None:
    redis = RedisServer().start()
    try:
        state = {"backend": "redis", "url": redis.url, "timeout": 1, "ping_interval": 0.2}
        path = tmp_path / "routes.yaml"
        path.write_text(quota_table(fake, state, requests_per_day=4))
        with ServeProcess(str(path)) as one, ServeProcess(str(path)) as two:
            codes = [post(router.url, CAPPED).status_code for router in (one, two, one, two, one, two)]
            assert codes == [200, 200, 200, 200, 429, 429]
            check_refusal(post(two.url, CAPPED), time.time())
            # tokens: counted where the answer ended, seen by the other process at its next admission
            assert post(one.url, FRUGAL).status_code == 200
            assert post(one.url, FRUGAL).status_code == 200  # one answer used so far: under the quota
            wait_for(lambda: post(two.url, FRUGAL).status_code == 429, timeout=5)
            for router in (one, two):  # every process reports the same shared figures
                document = usage(router.url).json()
                wait_for(
                    lambda url=router.url: usage(url).json()["days"][0]["keys"]["frugal"]["requests"] == 2
                )
                assert document["quotas"]["capped"]["requests_per_day"] == {"limit": 4, "used": 4}
            today = usage(two.url).json()["days"][0]["keys"]
            assert today["capped"]["requests"] == 4 and today["frugal"]["total_tokens"] == 2 * ANSWER_TOKENS
            # a reload with a higher quota keeps the shared count
            text = yaml.safe_load(path.read_text())
            text["auth"]["api_keys"][0]["requests_per_day"] = 5
            path.write_text(yaml.safe_dump(text, sort_keys=False))
            for router in (one, two):
                reloaded = httpx.post(
                    router.url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"}
                )
                assert reloaded.status_code == 200, reloaded.text
            assert [post(r.url, CAPPED).status_code for r in (two, one)] == [200, 429]
    finally:
        redis.stop()


def test_with_redis_lost_a_process_goes_on_from_the_last_shared_count(fake: FakeOpenAI) -> None:
    redis = RedisServer().start()
    try:
        state = {"backend": "redis", "url": redis.url, "timeout": 0.25, "ping_interval": 0.2}
        text = quota_table(fake, state, requests_per_day=4)
        with RunningRouter.from_yaml(text) as router:
            assert [post(router.url, CAPPED).status_code for _ in range(2)] == [200, 200]
            redis.stop()
            # 2 counted in Redis, then 2 more on this process's own count: the quota still holds
            assert [post(router.url, CAPPED).status_code for _ in range(3)] == [200, 200, 429]
            assert post(router.url, FREE).status_code == 200  # keys without quotas are not held up
            redis.start()  # empty (no persistence): what the process admitted meanwhile is sent again
            wait_for(lambda: router.runtime.state.up, timeout=10)
            wait_for(lambda: usage(router.url).status_code == 200, timeout=10)
            wait_for(lambda: usage(router.url).json()["quotas"]["capped"]["requests_per_day"]["used"] == 2)
    finally:
        redis.stop()
