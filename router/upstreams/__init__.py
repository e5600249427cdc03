"""Model servers behind one adapter interface: `ollama` (native API) and `openai` (any compatible server)."""

from __future__ import annotations

from router.config.models import UpstreamConfig
from router.upstreams.base import UpstreamAdapter
from router.upstreams.http import new_probe_session, new_session
from router.upstreams.ollama import OllamaAdapter
from router.upstreams.openai import OpenAIAdapter

ADAPTERS: dict[str, type[UpstreamAdapter]] = {"ollama": OllamaAdapter, "openai": OpenAIAdapter}


def build_adapter(config: UpstreamConfig) -> UpstreamAdapter:
    """The adapter for an upstream's `type`, with fresh connection pools (call inside the event loop):
    one for client traffic, a small one of its own for health probes."""
    return ADAPTERS[config.type](config, new_session(config), new_probe_session(config))
