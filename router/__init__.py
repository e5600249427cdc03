"""router: one validated routing table in front of private LLM servers (Ollama and OpenAI-compatible)."""

__version__ = "0.1.0"
