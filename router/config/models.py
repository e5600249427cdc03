"""The typed, immutable routing table.

Everything downstream of the loader (route table, policies, adapters, handlers) reads these objects and
nothing else: the YAML text and the raw dicts it parses into never leave `router.config`. The models are
frozen so a table that was validated once cannot drift while requests are using it, which is what makes
an atomic reload (swap one reference) safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


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


class ResumePolicy(FrozenModel):
    """Resuming a stream that broke after its answer started (docs/resume.md).

    Off by default: a resumed answer is stitched from two models' words, which a route must opt into.
    `max_resumes` bounds how often one answer may move on, so a broken stream never loops.
    """

    enabled: bool = False
    max_resumes: int = Field(default=1, ge=1, le=5)
    # Relayed chunks kept unparsed until a break (router.resume): an unbroken stream never parses them; the
    # bound is on what one stream holds (a raw chunk is several times its text).
    keep_raw_bytes: int = Field(default=256 * 1024, ge=0, le=16 * 1024 * 1024)


class CircuitBreakerPolicy(FrozenModel):
    """Passive protection of one upstream, fed by real traffic (not by probes)."""

    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)
    half_open_max_requests: int = Field(default=1, ge=1)


def default_continuation(upstream_type: Any) -> str:
    """How an upstream of `upstream_type` continues a final assistant message when its table entry does
    not say: Ollama's /api/chat does; an OpenAI-compatible server must declare its mechanism."""
    return "ollama" if upstream_type == "ollama" else "none"


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
    # Size bounds on what the upstream sends back: a whole (non-streamed) answer, and one stream line.
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    # openai upstreams: ask every stream for its usage (`stream_options.include_usage`), for token accounting
    stream_usage: bool = True
    # How this server continues a final assistant message (router.upstreams.continuation), for resumed
    # streams; None: derived from `type` (ollama continues, an OpenAI-compatible server must say how).
    continuation: Literal["ollama", "vllm", "llama_cpp", "none"] | None = None

    @property
    def continues(self) -> str:
        """The continuation mechanism in force: the declared one, else the type's default."""
        return self.continuation if self.continuation is not None else default_continuation(self.type)

    def identity(self) -> tuple[Any, ...]:
        """What must stay equal for a reload to keep this upstream's connection pool and breaker."""
        key = self.api_key.get_secret_value() if self.api_key else None
        headers = tuple(sorted(self.headers.items()))
        bounds = (self.max_response_bytes, self.max_line_bytes)  # the adapter reads them once
        asks = (self.stream_usage,)  # read once by the adapter too
        return (self.type, self.base_url.rstrip("/"), key, headers, self.max_connections, *bounds, *asks)


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
    # longest a stream may last once it started, however steadily it trickles; then an error event
    max_stream_duration: float = Field(default=1800.0, gt=0)
    # a stream that breaks after its answer started goes on on another replica or fallback (off by default)
    resume: ResumePolicy = ResumePolicy()


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
    # what the route serves: chat (chat and text completions) or embeddings; requests of the other kind 400
    kind: Literal["chat", "embeddings"] = "chat"
    aliases: tuple[str, ...] = ()  # other model names selecting this route (unique across the table)


class ServerSettings(FrozenModel):
    """How the process listens. Changing these needs a restart, not a reload."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    workers: int = Field(default=1, ge=1)
    allow_unauthenticated: bool = False
    cors_allowed_origins: tuple[str, ...] = ()
    # Bounds on what one client connection may hold (router.security.limits): a socket that never finishes
    # its request, idles, or stops reading is closed; connections past the cap are refused.
    request_head_timeout: float = Field(default=10.0, gt=0)  # connection (or first byte) to end of head
    request_body_timeout: float = Field(default=30.0, gt=0)  # from the end of the head to the end of the body
    keepalive_timeout: float = Field(default=5.0, gt=0)  # idle between two requests on one connection
    client_write_timeout: float = Field(default=30.0, gt=0)  # a client that does not read is let go
    max_connections: int = Field(default=4096, ge=1)  # per worker process; idle ones are closed first
    max_event_subscribers: int = Field(default=64, ge=1)  # open /events streams; 503 beyond
    # connections the kernel has accepted for the router but the router has not yet taken (listen(2));
    # cut to net.core.somaxconn by the kernel
    listen_backlog: int = Field(default=4096, ge=1, le=65535)


class SessionSettings(FrozenModel):
    """Server-side conversations (`session_id`): bounded in count, size and idle time, kept in memory."""

    enabled: bool = True
    max_sessions: int = Field(default=1000, ge=1)  # the least recently used goes first
    max_messages: int = Field(default=200, ge=2)  # per session; the oldest messages are dropped
    max_chars: int = Field(default=200_000, ge=1)  # per session: each message counted as its whole JSON
    idle_ttl: float = Field(default=1800.0, gt=0)  # seconds without a request before a session is forgotten
    # per principal (API key; the one `None` without keys): beyond it the key's own oldest session goes
    max_sessions_per_key: int = Field(default=100, ge=1)


class ApiKey(FrozenModel):
    """A client key for the model routes: who it is, which routes it may use, how fast.

    `key` is either `sha256:<64 hex digits>` (the digest of the key, so the file holds no secret) or the
    key itself, normally from `${ENV_VAR}`; only its SHA-256 digest is kept in memory for comparison.
    """

    name: str
    key: SecretStr
    routes: tuple[str, ...] | None = None  # route paths this key may use; None: every route
    rate_limit_per_minute: int | None = Field(default=None, ge=1)  # token bucket; None: unlimited
    max_concurrency: int | None = Field(default=None, ge=1)  # requests in progress at once; None: unlimited
    # quotas per UTC day, shared by every process through `state:` (router.state.usage); None: none
    requests_per_day: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)


class AdminKey(FrozenModel):
    """A key for /admin/* (and /status, /events, /debug, /metrics unless `auth.public_status`)."""

    name: str
    key: SecretStr


class AuthSettings(FrozenModel):
    """Who may call the router. No `api_keys`: the model routes are open (loopback only, unless allowed)."""

    api_keys: tuple[ApiKey, ...] = ()
    admin_keys: tuple[AdminKey, ...] = ()
    public_status: bool = False  # /status, /events, /debug and /metrics without an admin key


class LoggingSettings(FrozenModel):
    """The router's own log: one line per request, state changes, and the process's messages."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    file: str | None = None  # append to this file instead of standard error


class StateSettings(FrozenModel):
    """Where state that several processes must agree on lives: sessions, rate limits, breakers, health.

    `memory` keeps it in each process (one process is then the only safe deployment for sessions and rate
    limits); `redis` shares it between every worker of every replica. Changing it needs a restart.
    """

    backend: Literal["memory", "redis"] = "memory"
    url: SecretStr | None = None  # redis:// or rediss://; a password comes from ${VAR} inside the URL
    key_prefix: str = Field(default="router:", min_length=1, max_length=64)
    timeout: float = Field(default=0.25, gt=0, le=10)  # every Redis call; beyond it Redis counts as lost
    connect_timeout: float = Field(default=1.0, gt=0, le=30)
    max_connections: int = Field(default=64, ge=1, le=10_000)  # the pool of one process
    ping_interval: float = Field(default=0.5, gt=0, le=60)  # how often a lost Redis is tried again
    tls_ca_file: str | None = None  # rediss://: a private CA to verify the server with

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateSettings:
        if self.backend == "redis" and self.url is None:
            raise ValueError(
                "state.backend redis needs state.url, e.g. redis://:${REDIS_PASSWORD}@redis:6379/0"
            )
        return self


class TelemetrySettings(FrozenModel):
    """OpenTelemetry tracing over OTLP/HTTP. Keys left None fall back on the standard `OTEL_*` variables,
    read once when the table is applied; tracing is on only when an endpoint is known from either."""

    enabled: bool | None = None  # False: off even if the environment names an endpoint
    otlp_endpoint: str | None = None  # base URL; spans go to <endpoint>/v1/traces
    sample_ratio: float | None = Field(default=None, ge=0, le=1)
    service_name: str | None = None
    headers: Mapping[str, str] = Field(default_factory=dict)  # secrets, masked like upstream credentials
    timeout: float = Field(default=10.0, gt=0, le=60)  # one export, retries included
    max_queue_size: int = Field(default=2048, ge=1, le=1_000_000)  # finished spans awaiting export


class RouterConfig(FrozenModel):
    """A whole validated table, with where it came from so /status and reloads can name its version."""

    version: Literal[1] = 1
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    logging: LoggingSettings = LoggingSettings()
    sessions: SessionSettings = SessionSettings()
    state: StateSettings = StateSettings()

    telemetry: TelemetrySettings = TelemetrySettings()
    upstreams: Mapping[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]
    source: str = "<memory>"
    sha256: str = ""
