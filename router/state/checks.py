"""Refusing deployments whose processes would silently disagree (several processes, in-memory state)."""

from __future__ import annotations

from router.config.models import RouterConfig


def multi_process_refusal(config: RouterConfig, processes: int) -> str | None:
    """Why `processes` router processes must not serve this table with `state.backend: memory`, or None.

    Each process would keep its own sessions (a turn landing on another process loses the conversation)
    and its own rate-limit buckets (each key admitted up to N times its limit). Breakers and health stay
    per process too, which costs some extra failed requests but is not refused.
    """
    if processes <= 1 or config.state.backend != "memory":
        return None
    wrong = []
    if config.sessions.enabled:
        wrong.append(
            "sessions are enabled, and each process would keep its own conversations: a turn that lands "
            "on another process is answered without the history before it"
        )
    limited = [key.name for key in config.auth.api_keys if key.rate_limit_per_minute is not None]
    if limited:
        wrong.append(
            f"key(s) {', '.join(limited)} have rate_limit_per_minute, and each process would keep its own "
            f"bucket: a key would be admitted up to {processes} times its limit"
        )
    if not wrong:
        return None
    return (
        f"{config.source}: refusing to run {processes} processes with state.backend: memory: "
        + "; ".join(wrong)
        + ". Either share the state (state: {backend: redis, url: redis://HOST:6379/0}) or turn off "
        "what cannot be shared (sessions: {enabled: false}, and no rate_limit_per_minute on keys), "
        "or run one process (--workers 1)."
    )
