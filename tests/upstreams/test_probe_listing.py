"""A listing answers each of thousands of health questions with a set lookup: it is read once per fetch,
not scanned once per model (10,000 models on one upstream made each probe round quadratic)."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from router.config.models import UpstreamConfig
from router.upstreams import build_adapter, ollama, openai
from tests.fakes import FakeOllama, FakeOpenAI

MODELS = 2000


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_a_listing_is_read_once_for_all_the_models_asked_about(
    kind: str, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_ollama if kind == "ollama" else fake_openai
    fake.models = [f"m{i}" if kind == "openai" else f"m{i}:latest" for i in range(MODELS)]
    module, reader = (ollama, "_names") if kind == "ollama" else (openai, "_model_ids")
    real = getattr(module, reader)
    reads: list[int] = []
    monkeypatch.setattr(module, reader, lambda listing: reads.append(1) or real(listing))
    adapter = build_adapter(UpstreamConfig(name="u", type=kind, base_url=fake.base_url))
    try:
        await asyncio.gather(*(adapter.probe(f"m{i}", None, 2.0, max_age=30) for i in range(MODELS)))
        with pytest.raises(Exception, match="m-absent"):
            await adapter.probe("m-absent", None, 2.0, max_age=30)
        assert len(reads) == 1
    finally:
        await adapter.close()


async def test_a_shared_failure_does_not_keep_every_question_s_traceback(fake_ollama: FakeOllama) -> None:
    adapter = build_adapter(UpstreamConfig(name="o", type="ollama", base_url=fake_ollama.base_url))
    try:
        fake_ollama.go_down()
        depths = []
        for _ in range(50):
            with pytest.raises(Exception) as failed:
                await adapter.probe("qwen3:32b", None, 2.0, max_age=30)
            depths.append(len(traceback.extract_tb(failed.value.__traceback__)))
        assert depths[-1] == depths[1], depths  # the same answer each time, not a growing chain
    finally:
        await adapter.close()
