"""Answering one chat request on a route: dispatch it, then reply whole or as a stream.

Handlers hand over a parsed request and get back a ready ASGI response. Responses are Litestar's
low-level ASGI responses with pre-encoded bodies, because the answer is already JSON bytes from the
upstream: encoding it again would be work for nothing on every request.
"""

from __future__ import annotations

from typing import Any

from litestar.response.base import ASGIResponse

from router.api.request import ChatRequest
from router.dispatch import dispatch
from router.registry import Registry
from router.streaming import SSEResponse
from router.table import Route
from router.upstreams.base import ChatCall, EventStream, Limits, UpstreamAdapter


async def _complete(adapter: UpstreamAdapter, call: ChatCall, limits: Limits) -> bytes:
    return await adapter.complete(call, limits)


async def _open_stream(
    adapter: UpstreamAdapter, call: ChatCall, limits: Limits
) -> tuple[EventStream, list[bytes]]:
    return await adapter.open_stream(call, limits)


async def answer(
    route: Route, request: ChatRequest, body: dict[str, Any], request_id: str, registry: Registry
) -> ASGIResponse:
    """The response for `request` on `route` (or on one of its fallbacks)."""
    if request.stream:
        (stream, first), lease = await dispatch(route, request, body, request_id, registry, _open_stream)
        headers = {"X-Router-Route": lease.route.path, "X-Router-Upstream": lease.upstream_name}
        return SSEResponse(stream, first, lease.route.config.policy, lease.finish, headers)
    data, lease = await dispatch(route, request, body, request_id, registry, _complete)
    lease.finish(None)
    headers = {"X-Router-Route": lease.route.path, "X-Router-Upstream": lease.upstream_name}
    return ASGIResponse(body=data, media_type="application/json", headers=headers)
