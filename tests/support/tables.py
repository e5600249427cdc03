"""Routing tables as text, for tests that need the YAML itself (line and column numbers, schema checks)."""

MINIMAL_TABLE = """\
version: 1
upstreams:
  ollama:
    type: ollama
    base_url: http://127.0.0.1:11434
routes:
  - path: /chat/qwen3
    model: qwen3:32b
    upstream: ollama
"""
"""The smallest valid table: one Ollama upstream, one route. Tests append top-level sections to it."""
