"""Key-based access: client keys for the model routes, admin keys for /admin and the status endpoints.

Keys are held only as SHA-256 digests. A presented key is hashed once and compared with every configured
digest by `hmac.compare_digest`, without stopping at the first match, so neither the comparison nor the
position of the matching key shows in the response time. Nothing here ever puts a presented or configured
key into a message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from router.security.access import Access, Forbidden, Headers, KeyBusy, RateLimited, Release, Unauthenticated
from router.security.ratelimit import TokenBucket

_AUTHORIZATION = b"authorization"
_X_API_KEY = b"x-api-key"
_HOW = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


@dataclass(slots=True)
class Key:
    """One configured key: its name, its digest, what it may use and its bucket."""

    name: str
    digest: bytes
    routes: frozenset[str] | None = None  # route paths as the table spells them; None: all
    per_minute: int | None = None
    bucket: TokenBucket | None = None
    max_concurrency: int | None = None
    load: KeyLoad | None = None  # counted only for a key with max_concurrency


class KeyLoad:
    """How many requests of one key are in progress. Shared by the tables of a reload, like a bucket."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def release(self) -> None:
        """One request ended (its record calls this once)."""
        self.count -= 1


def presented_key(headers: Headers) -> bytes | None:
    """The key the client sent (Bearer token or X-API-Key), b"" for a malformed one, None for none."""
    for name, value in headers:
        if name == _AUTHORIZATION:
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
        if name == _X_API_KEY:
            return value.strip()
    return None


def _match(digest: bytes, keys: Sequence[Key]) -> Key | None:
    found = None
    for key in keys:  # no early exit: every digest is compared whatever matched
        if hmac.compare_digest(digest, key.digest) and found is None:
            found = key
    return found


class KeyAccess(Access):
    """Access with keys. No `api_keys`: the model routes stay open and only the admin side is guarded."""

    def __init__(self, api_keys: Sequence[Key], admin_keys: Sequence[Key], public_status: bool) -> None:
        self.api_keys = tuple(api_keys)
        self.admin_keys = tuple(admin_keys)
        self.public_status = public_status
        self._by_name = {key.name: key for key in self.api_keys}

    def authenticate(self, headers: Headers) -> str | None:
        if not self.api_keys:
            return None
        token = presented_key(headers)
        if not token:
            raise Unauthenticated(f"this route needs an API key; {_HOW}")
        key = _match(hashlib.sha256(token).digest(), self.api_keys)
        if key is None:
            raise Unauthenticated("the API key is not valid for this router; check the key you sent")
        return key.name

    def authorize(self, principal: str | None, route_path: str) -> None:
        if principal is None:
            return
        key = self._by_name.get(principal)
        if key is None:  # a principal of another table version (a reload removed the key)
            raise Unauthenticated("the API key is no longer valid for this router")
        if key.routes is not None and route_path not in key.routes:
            raise Forbidden(f"the API key '{key.name}' may not use route {route_path}")
        if key.bucket is not None:
            wait = key.bucket.take()
            if wait:
                raise RateLimited(
                    f"the API key '{key.name}' is over its limit of {key.per_minute} requests a minute; "
                    f"retry in {wait:.1f}s",
                    retry_after=wait,
                )

    def allowed_routes(self, principal: str | None) -> frozenset[str] | None:
        key = self._by_name.get(principal) if principal is not None else None
        return None if key is None else key.routes

    def begin(self, principal: str | None) -> Release | None:
        key = self._by_name.get(principal) if principal is not None else None
        if key is None or key.load is None or key.max_concurrency is None:
            return None
        load = key.load
        if load.count >= key.max_concurrency:
            raise KeyBusy(
                f"the API key '{key.name}' already has {load.count} requests in progress, its "
                f"max_concurrency; retry when one of them has ended",
                retry_after=1.0,
            )
        load.count += 1
        return load.release

    def check_admin(self, headers: Headers, what: str = "/admin") -> None:
        self._check_admin_key(headers, what)

    def check_status(self, headers: Headers) -> None:
        if not self.public_status:
            self._check_admin_key(headers, "the status endpoints")

    def _check_admin_key(self, headers: Headers, what: str) -> None:
        token = presented_key(headers)
        if not token:
            raise Unauthenticated(f"{what} needs an admin key; {_HOW}")
        digest = hashlib.sha256(token).digest()
        if _match(digest, self.admin_keys) is not None:
            return
        if _match(digest, self.api_keys) is not None:
            raise Forbidden(f"{what} needs an admin key (auth.admin_keys); this is a client key")
        if not self.admin_keys:
            raise Forbidden(f"{what} is disabled: no auth.admin_keys are configured")
        raise Unauthenticated("the admin key is not valid for this router; check the key you sent")
