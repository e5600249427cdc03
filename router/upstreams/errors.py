"""What can go wrong talking to a model server, and what each failure means for the client and the breaker.

Each class answers three questions once, so the dispatcher never inspects exception types from the HTTP
client: which status the client gets, whether another attempt may help (`retryable`), and whether the
failure is the upstream's fault (`upstream_fault`, which feeds the circuit breaker). Client errors
(4xx caused by the request) are never the upstream's fault and never retried.
"""

from __future__ import annotations

import asyncio

import aiohttp

from router.errors import RouterError


class UpstreamError(RouterError):
    """A failure while talking to one upstream."""

    retryable: bool = True
    upstream_fault: bool = True


class UpstreamUnavailable(UpstreamError):
    """Nothing answered: connection refused, DNS failure or connect timeout. Safe to retry elsewhere."""

    status = 503
    type = "server_error"
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    """The model did not start answering within the route's `timeout`.

    Not retried on the same route: the model is busy or stuck, and asking it again multiplies the wait the
    client already paid. A replica or fallback route may still be tried.
    """

    status = 504
    type = "timeout"
    code = "upstream_timeout"
    retryable = False


class UpstreamStalled(UpstreamError):
    """A stream went silent for longer than `stall_timeout` after it started."""

    status = 504
    type = "timeout"
    code = "upstream_stalled"
    retryable = False


class BadUpstreamResponse(UpstreamError):
    """The upstream answered something that is not its protocol: an HTML page, garbage, a broken line."""

    status = 502
    type = "server_error"
    code = "bad_upstream_response"


class UpstreamReset(UpstreamError):
    """The connection died under us (reset, closed early, truncated body)."""

    status = 502
    type = "server_error"
    code = "upstream_connection_reset"


class UpstreamRedirect(BadUpstreamResponse):
    """The upstream answered a redirect. Never followed: that would send the configured credentials and the
    user's prompt to whatever host the Location names, and pass its answer off as the model's.

    Not retried on the same replica (it will redirect again: the fix is the table's `base_url`); a replica
    or fallback may still be tried. It counts against the upstream: it is misconfigured or compromised.
    """

    code = "upstream_redirect"
    retryable = False


class UpstreamPoolExhausted(UpstreamError):
    """Every pooled connection to the upstream is busy (`max_connections`): the router's own back-pressure.

    The upstream did nothing wrong, so the breaker never hears of it, and another attempt on the same pool
    would only wait again; the client is told when to come back instead.
    """

    status = 503
    type = "server_error"
    code = "upstream_pool_exhausted"
    retryable = False
    upstream_fault = False


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status; its own message is kept for the client."""

    type = "server_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        client_status, error_type, code = _client_view(status)
        super().__init__(message, status=client_status, type=error_type, code=code, retry_after=retry_after)
        self.upstream_status = status
        self.retryable = status >= 500
        self.upstream_fault = status >= 500


def _client_view(status: int) -> tuple[int, str, str]:
    """Map an upstream status to what the client sees (docs/protocols.md, "Failures")."""
    if status == 429:
        return 429, "rate_limit_error", "upstream_rate_limited"
    if status == 404:
        return 404, "not_found_error", "model_not_found"
    if status in (401, 403):
        # The router's own credentials for the upstream are wrong: the client can do nothing about it.
        return 502, "server_error", "upstream_auth_failed"
    if status >= 500:
        return 502, "server_error", "upstream_error"
    return status, "invalid_request_error", "upstream_rejected_request"


def from_client_exception(exc: BaseException, where: object) -> UpstreamError:
    """Classify an aiohttp / asyncio exception raised while talking to `where` (an upstream's URL)."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamUnavailable(f"upstream at {where} did not accept the connection in time")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return UpstreamUnavailable(f"could not resolve the host of upstream {where}; check its base_url")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(
            f"upstream at {where} refused the connection ({exc.os_error.strerror or exc.os_error}); "
            "is the model server running?"
        )
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(f"upstream at {where} did not answer within the route's timeout")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return UpstreamReset(f"connection to upstream at {where} was reset: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ContentTypeError):
        return BadUpstreamResponse(f"upstream at {where} answered an unreadable response: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamReset(f"talking to upstream at {where} failed: {exc}")
    raise exc
