"""Probing cost grows with upstreams, not routes: one listing fetch answers many health questions."""

from __future__ import annotations

import asyncio

import pytest

from router.config.models import UpstreamConfig
from router.upstreams import build_adapter
from router.upstreams.errors import UpstreamUnavailable
from tests.fakes import FakeOllama, async_wait_for


async def test_concurrent_probes_of_many_models_share_one_fetch(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = [f"m{i}" for i in range(100)]
    adapter = build_adapter(UpstreamConfig(name="o", type="ollama", base_url=fake_ollama.base_url))
    try:
        await asyncio.gather(*(adapter.probe(f"m{i}", None, 2.0, max_age=0.5) for i in range(100)))
        assert fake_ollama.probe_count["/api/tags"] == 1
        await asyncio.sleep(0.6)  # older than max_age: the next question fetches again
        await adapter.probe("m1", None, 2.0, max_age=0.5)
        assert fake_ollama.probe_count["/api/tags"] == 2
        with pytest.raises(Exception, match="not pulled"):
            await adapter.probe("absent", None, 2.0, max_age=0.5)  # answered from the same listing
        assert fake_ollama.probe_count["/api/tags"] == 2
    finally:
        await adapter.close()


async def test_a_failed_fetch_is_the_answer_for_everyone_within_max_age(fake_ollama: FakeOllama) -> None:
    adapter = build_adapter(UpstreamConfig(name="o", type="ollama", base_url=fake_ollama.base_url))
    try:
        fake_ollama.go_down()
        for model in ("qwen3:32b", "qwen2:7b"):
            with pytest.raises(UpstreamUnavailable):
                await adapter.probe(model, None, 2.0, max_age=5.0)
        fake_ollama.come_up()
        await async_wait_for(lambda: fake_ollama.is_up)
        await adapter.probe("qwen3:32b", None, 2.0, max_age=0.0)  # max_age 0: always a fresh answer
        assert fake_ollama.probe_count["/api/tags"] == 1
    finally:
        await adapter.close()
