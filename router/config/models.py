"""The typed, immutable routing table.

Everything downstream of the loader (route table, policies, adapters, handlers) reads these objects and
nothing else: the YAML text and the raw dicts it parses into never leave `router.config`. The models are
frozen so a table that was validated once cannot drift while requests are using it, which is what makes
an atomic reload (swap one reference) safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class FrozenModel(BaseModel):
    """Base for every config object: immutable, and strict about unknown keys (the schema already is)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthCheckPolicy(FrozenModel):
    """Active probing of one route's model on its upstream(s).

    Asymmetric thresholds on purpose: one bad probe must not condemn a model that is merely busy, and a
    model that just came back must prove itself a few times before traffic returns to it.
    """

    enabled: bool = True
    interval: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=5.0, gt=0)
    failure_threshold: int = Field(default=2, ge=1)
    recovery_threshold: int = Field(default=3, ge=1)
    recovery_interval: float = Field(default=10.0, gt=0)
    # fraction of the interval, so routes do not probe in lock-step
    jitter: float = Field(default=0.1, ge=0, le=1)
    endpoint: str | None = None  # a plainer liveness probe path instead of the model listing


class CircuitBreakerPolicy(FrozenModel):
    """Passive protection of one upstream, fed by real traffic (not by probes)."""

    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)
    half_open_max_requests: int = Field(default=1, ge=1)


class UpstreamConfig(FrozenModel):
    """One model server. Its identity (everything but its name) decides whether a reload keeps its pool."""

    name: str
    type: Literal["ollama", "openai"]
    base_url: str
    api_key: SecretStr | None = None
    headers: Mapping[str, str] = Field(default_factory=dict)
    circuit_breaker: CircuitBreakerPolicy = CircuitBreakerPolicy()
    max_connections: int = Field(default=100, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queue: int = Field(default=0, ge=0)
    queue_timeout: float = Field(default=30.0, gt=0)

    def identity(self) -> tuple[Any, ...]:
        """What must stay equal for a reload to keep this upstream's connection pool and breaker."""
        key = self.api_key.get_secret_value() if self.api_key else None
        headers = tuple(sorted(self.headers.items()))
        return (self.type, self.base_url.rstrip("/"), key, headers, self.max_connections)


class RoutePolicy(FrozenModel):
    """Per-route limits; `defaults:` in the file provides them and a route may override any key."""

    # one attempt until the answer starts (the whole answer when not streaming)
    timeout: float = Field(default=120.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    stall_timeout: float = Field(default=60.0, gt=0)  # longest silence between chunks once streaming started
    heartbeat_interval: float = Field(default=15.0, gt=0)  # SSE comment sent while the model is silent
    max_retries: int = Field(default=3, ge=0)  # retries before the first byte reached the client; never after
    retry_backoff: float = Field(default=0.2, ge=0)  # first backoff in seconds; doubles, with full jitter
    retry_backoff_max: float = Field(default=5.0, ge=0)
    # cap: larger client values are clamped, missing ones set
    max_tokens: int | None = Field(default=2048, ge=1)
    health_check: HealthCheckPolicy = HealthCheckPolicy()


class UpstreamRef(FrozenModel):
    """A replica of the route's model on one upstream, with its share of traffic."""

    name: str
    weight: int = Field(default=1, ge=1)


class RouteConfig(FrozenModel):
    """One entry of the routing table: a path (and a name) bound to a model on one or more upstreams."""

    path: str
    name: str
    model: str
    upstreams: tuple[UpstreamRef, ...]
    fallbacks: tuple[str, ...] = ()  # paths of other routes to try when this one is unavailable
    options: Mapping[str, Any] = Field(default_factory=dict)  # upstream-native options (Ollama `options`)
    description: str | None = None
    policy: RoutePolicy = RoutePolicy()


class ServerSettings(FrozenModel):
    """How the process listens. Changing these needs a restart, not a reload."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    workers: int = Field(default=1, ge=1)
    allow_unauthenticated: bool = False
    cors_allowed_origins: tuple[str, ...] = ()


class RouterConfig(FrozenModel):
    """A whole validated table, with where it came from so /status and reloads can name its version."""

    version: Literal[1] = 1
    server: ServerSettings = ServerSettings()
    upstreams: Mapping[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]
    source: str = "<memory>"
    sha256: str = ""
