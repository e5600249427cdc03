"""`GET /metrics`: the Prometheus exposition of the runtime's own registry, behind the status access check."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from router.observability.metrics import CONTENT_TYPE, RouterMetrics
from router.security import Access


def metrics_handlers(metrics: RouterMetrics, access: Access) -> list[HTTPRouteHandler]:
    """The `/metrics` endpoint for one table version (its access policy decides who may scrape)."""

    @get(
        "/metrics",
        operation_id="metrics",
        tags=["ops"],
        summary="Prometheus metrics: requests, latency, tokens, load, health, breakers, reloads",
    )
    async def metrics_endpoint(request: Request[Any, Any, Any]) -> ASGIApp:
        access.check_status(request.scope["headers"])
        return ASGIResponse(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return [metrics_endpoint]
