"""Model servers behind one adapter interface: `ollama` (native API) and `openai` (any compatible server)."""

from __future__ import annotations

from router.config.models import UpstreamConfig
from router.upstreams.base import UpstreamAdapter
from router.upstreams.http import new_session
from router.upstreams.ollama import OllamaAdapter
from router.upstreams.openai import OpenAIAdapter

ADAPTERS: dict[str, type[UpstreamAdapter]] = {"ollama": OllamaAdapter, "openai": OpenAIAdapter}


def build_adapter(config: UpstreamConfig) -> UpstreamAdapter:
    """The adapter for an upstream's `type`, with a fresh connection pool (call inside the event loop)."""
    return ADAPTERS[config.type](config, new_session(config))
