"""An in-memory ASGI client for the chat path: one request in, the response's messages out.

It plays the server's side of ASGI as uvicorn does (the body, then `http.disconnect` once the client has
gone), and can leave after a number of body events or break the connection when the response starts,
so every way a client can end a request is reproducible in process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from router.api.chat import ChatServices, Door, Resolve
from router.api.fastpath import ChatFastPath
from router.dialects.openai_chat import OPENAI_CHAT
from router.observability import Observer, RequestRecord
from router.security import OpenAccess, Redactor
from router.table import Route


class Records(Observer):
    """Keeps every finished request record, and how many response messages had been sent by then."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.sent_at_report: list[int] = []
        self.client: FakeClient | None = None

    def request_finished(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.sent_at_report.append(len(self.client.messages) if self.client else -1)


class Turns:
    """A `Sessions` that records turns and has no history."""

    def __init__(self) -> None:
        self.turns: list[tuple[str, str, bool]] = []

    def history(self, session_id: str, owner: str | None) -> list[dict[str, Any]]:
        return []

    def record_turn(
        self, session_id: str, owner: str | None, sent: list[dict[str, Any]], answer: str, interrupted: bool
    ) -> None:
        self.turns.append((session_id, answer, interrupted))


class FakeClient:
    """One request's client: sends `body`, collects what the router sends back."""

    def __init__(self, body: dict[str, Any], *, leave_after: int | None = None, break_on_start: bool = False):
        self.body = json.dumps(body).encode()
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.leave_after = leave_after  # body events received before the client goes away
        self.break_on_start = break_on_start
        self._asked = False

    async def receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.break_on_start and message["type"] == "http.response.start":
            self.gone.set()
            raise OSError("connection reset by peer")
        self.messages.append(message)
        bodies = sum(1 for m in self.messages if m["type"] == "http.response.body")
        if self.leave_after is not None and bodies >= self.leave_after:
            self.gone.set()

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body_bytes(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    def events(self) -> list[str]:
        return [line for line in self.body_bytes.decode().split("\n") if line]


class ChatPath:
    """The fast path over a core, with recording observers and sessions."""

    def __init__(
        self, registry: Any, redactor: Redactor | None = None, sessions: Turns | None = None
    ) -> None:
        self.records = Records()
        self.sessions = sessions
        services = ChatServices(
            registry=registry,
            observer=self.records,
            access=OpenAccess(),
            redact=redactor or Redactor(),
            sessions=sessions,
        )
        self.fast = ChatFastPath({}, services, 1 << 20, services.redact)

    async def serve(self, route: Route, client: FakeClient) -> None:
        self.records.client = client

        def resolve(_: Any) -> Route:
            return route

        resolver: Resolve = resolve
        scope = {
            "type": "http",
            "method": "POST",
            "path": route.path,
            "headers": [(b"content-type", b"application/json")],
            "state": {"request_id": "rid-1"},
        }
        await self.fast.serve(scope, client.receive, client.send, Door(OPENAI_CHAT, resolver))
