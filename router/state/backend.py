"""The interface between the router and wherever its shared state lives.

Three narrow seams, each a small object the request path already knows how to call:

- `sessions(store)`: the conversation store the chat handler awaits (`router.api.chat.Sessions`) plus
  `delete` for `DELETE /sessions/{id}`;
- `admission(access)`: how a key's rate limit is taken, or None when the access policy's own in-process
  buckets do it;
- `attach(registry, prober, find)`: breaker and health transitions shared between processes.

A backend that cannot reach its store says so through `up` and `status()`; callers that need shared state
they cannot get raise `StateUnavailable` (503 with Retry-After), never wait for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from router.errors import RouterError

if TYPE_CHECKING:
    from router.policies import CircuitBreaker, HealthTracker
    from router.probing import Prober
    from router.registry import Registry
    from router.security import Access
    from router.sessions import SessionStore
    from router.state.usage import UsageLedger


class StateUnavailable(RouterError):
    """Shared state this request needs cannot be read or written safely now (503, Retry-After)."""

    status = 503
    type = "server_error"
    code = "state_unavailable"


class SessionBackend(Protocol):
    """Conversations: what the chat handler and `DELETE /sessions/{id}` call."""

    async def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The stored messages (empty for a new id); SessionNotFound if another owner's."""
        ...

    async def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        """Append one turn atomically; StateUnavailable when it cannot be stored."""
        ...

    async def delete(self, session_id: str, owner: str | None) -> bool:
        """Forget a session; False when there is none by that id for this owner."""
        ...


Admit = Callable[[str | None], Awaitable[None]]
"""admit(principal): take one request from the key's shared rate limit; RateLimited (429) when over."""

ReplicaFinder = Callable[[], Iterable[tuple[str, "CircuitBreaker", str | None, "HealthTracker | None"]]]
"""Every (upstream name, breaker, model or endpoint, health tracker) the current table serves."""


class SharedState(ABC):
    """One process's handle on the shared state; built from the table's `state:` block."""

    backend: str = "memory"

    @property
    def up(self) -> bool:
        """Whether the shared store answers now (always true in memory)."""
        return True

    @abstractmethod
    def sessions(self, store: SessionStore) -> SessionBackend:
        """The conversation store to serve; `store` is the process's in-memory one."""

    def admission(self, access: Access) -> Admit | None:
        """The shared rate-limit step after authorisation, or None when `access` limits by itself."""
        return None

    def usage(self) -> UsageLedger:
        """The token and request counters behind quotas and `GET /usage` (router.state.usage)."""
        from router.state.usage import MemoryUsage

        return MemoryUsage()

    def attach(self, registry: Registry, prober: Prober, find: ReplicaFinder) -> None:
        """Share breaker and health transitions of the registry's objects (nothing to do in memory)."""
        return None

    def table_changed(self) -> None:
        """A new table is served (its breakers and trackers may be new)."""
        return None

    async def start(self) -> None:
        """Connect (never fails start-up: a lost store is a state the router serves through)."""
        return None

    async def close(self) -> None:
        """Disconnect (shutdown)."""
        return None

    def status(self) -> dict[str, Any]:
        """The `state` section of /status and /readyz."""
        return {"backend": self.backend, "up": self.up}
