"""Who may call what. The request path asks an `Access` policy; the table's `auth` section decides which."""

from __future__ import annotations

import ipaddress

from router.config import RouterConfig
from router.config.build import key_digest
from router.config.semantics import normalise_path
from router.security.access import Access, Forbidden, KeyBusy, OpenAccess, RateLimited, Unauthenticated
from router.security.keys import Key, KeyAccess, KeyLoad
from router.security.ratelimit import TokenBucket
from router.security.redact import Redactor, config_secrets, public_url

__all__ = [
    "Access",
    "Forbidden",
    "KeyAccess",
    "KeyBusy",
    "OpenAccess",
    "RateLimited",
    "Redactor",
    "Unauthenticated",
    "bind_refusal",
    "build_access",
    "config_secrets",
    "is_loopback",
    "public_url",
    "unauthenticated_warning",
]


def build_access(config: RouterConfig, previous: Access | None = None) -> Access:
    """The access policy for a table (no keys configured: open).

    `previous` is the policy of the table being replaced: a key whose digest and limit did not change keeps
    its rate-limit bucket, so a reload neither forgives nor punishes anyone; a key keeps its count of
    requests in progress (for `max_concurrency`) whatever its limit, since those requests go on.
    """
    auth = config.auth
    if not auth.api_keys and not auth.admin_keys:
        return OpenAccess()
    old = {(k.digest, k.per_minute): k for k in previous.api_keys} if isinstance(previous, KeyAccess) else {}
    # requests in progress are counted on, whatever else changed about the key: they did not end
    loads = {k.digest: k.load for k in previous.api_keys} if isinstance(previous, KeyAccess) else {}
    paths = {normalise_path(route.path): route.path for route in config.routes}
    api_keys = []
    for entry in auth.api_keys:
        digest = key_digest(entry.key.get_secret_value())
        routes = None
        if entry.routes is not None:
            routes = frozenset(paths[p] for p in map(normalise_path, entry.routes) if p in paths)
        kept = old.get((digest, entry.rate_limit_per_minute))
        bucket = kept.bucket if kept is not None else None
        if bucket is None and entry.rate_limit_per_minute is not None:
            bucket = TokenBucket(entry.rate_limit_per_minute)
        load = None
        if entry.max_concurrency is not None:
            load = loads.get(digest) or KeyLoad()
        api_keys.append(
            Key(entry.name, digest, routes, entry.rate_limit_per_minute, bucket, entry.max_concurrency, load)
        )
    admin_keys = [Key(entry.name, key_digest(entry.key.get_secret_value())) for entry in auth.admin_keys]
    return KeyAccess(api_keys, admin_keys, auth.public_status)


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_refusal(config: RouterConfig, host: str) -> str | None:
    """Why the router must not listen on `host` with this table, or None when it may."""
    if config.auth.api_keys or config.server.allow_unauthenticated or is_loopback(host):
        return None
    return (
        f"{config.source}: refusing to listen on {host}: no auth.api_keys are configured, so anyone who can "
        "reach this address could use every route. Add client keys under auth.api_keys, listen on "
        "127.0.0.1, or set server.allow_unauthenticated: true if a proxy in front authenticates clients."
    )


def unauthenticated_warning(config: RouterConfig, host: str) -> str | None:
    """The start-up warning for a router that serves its model routes without keys."""
    if config.auth.api_keys:
        return None
    return f"no auth.api_keys configured: every client that can reach {host} may use every route" + (
        "" if is_loopback(host) else " (server.allow_unauthenticated is true)"
    )
