"""Fake Ollama and OpenAI-compatible model servers on real loopback sockets, steerable at runtime.

    with FakeOllama() as fake:                  # or the `fake_ollama` / `fake_openai` fixtures
        fake.set_behaviour("reset_mid_stream", after=3)
        ...                                     # point the router at fake.base_url
        fake.wait_for(lambda: fake.disconnects == 1)

Behaviours and their parameters: see `BEHAVIOURS`.
"""

from ._base import (
    BEHAVIOURS,
    Behaviour,
    Disconnect,
    FakeUpstream,
    RecordedRequest,
    async_wait_for,
    split_words,
    wait_for,
)
from ._ollama import FakeOllama
from ._openai import FakeOpenAI

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "Disconnect",
    "FakeOllama",
    "FakeOpenAI",
    "FakeUpstream",
    "RecordedRequest",
    "async_wait_for",
    "split_words",
    "wait_for",
]
