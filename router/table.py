"""The route table: every route of one config version, resolved to live upstream state, built once.

A request finds its route (by path through the app, by name or model here) with everything prepared: the
replicas with their breakers, limiters and health trackers, the time limits, the fallback routes. Nothing
in the request path re-reads the config. A reload builds a new table against a registry plan (nothing that
serves changes while it is built) and swaps it in; requests that already hold a route keep using it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from router.config.common import normalise_path
from router.config.models import ResumePolicy, RouteConfig, RouterConfig
from router.policies import HealthTracker, Replica
from router.registry import RegistryPlan, UpstreamState
from router.upstreams.base import Limits


class RouteReplica(Replica):
    """A replica of a route's model: one upstream, its health for this model, its share of traffic."""

    __slots__ = ("continuation", "health", "upstream")

    def __init__(
        self,
        name: str,
        upstream: UpstreamState,
        weight: int,
        health: HealthTracker | None,
        continuation: str = "none",
    ) -> None:
        self.upstream = upstream
        self.health = health
        # how this upstream continues an answer another one started (router.upstreams.continuation)
        self.continuation = continuation
        super().__init__(name, weight, self._is_available)

    def _is_available(self) -> bool:
        health = self.health
        if health is not None and not health.accepts_traffic:
            return False
        return self.upstream.breaker.is_available()


@dataclass(eq=False)
class Route:
    """One routing-table entry, ready to serve."""

    config: RouteConfig
    replicas: tuple[RouteReplica, ...]
    limits: Limits
    options: Mapping[str, Any]
    fallbacks: tuple[Route, ...] = field(default=())
    # the route's `resume` policy when it is enabled, else None: decided here, so a route without it
    # makes no per-request check beyond this one attribute (router.resume)
    resume: ResumePolicy | None = None

    @property
    def path(self) -> str:
        """The route's URL path."""
        return self.config.path

    @property
    def name(self) -> str:
        """The route's name (a model id for `/v1/chat/completions`)."""
        return self.config.name

    @property
    def model(self) -> str:
        """The model the upstream is asked for."""
        return self.config.model

    def candidates(self) -> Iterator[Route]:
        """This route, then its fallbacks in order (each once)."""
        yield self
        yield from self.fallbacks


class RouteTable:
    """All routes of one config version, indexed for the two ways clients address them."""

    def __init__(self, config: RouterConfig, routes: tuple[Route, ...]) -> None:
        self.config = config
        self.routes = routes
        self.by_model: dict[str, Route] = {}
        for route in routes:  # names win over model ids when they collide; the first route wins a model id
            self.by_model.setdefault(route.model, route)
        for route in routes:  # aliases are unique and name no other route (`router validate` sees to it)
            for alias in route.config.aliases:
                self.by_model[alias] = route
        for route in routes:
            self.by_model[route.name] = route

    def upstreams(self) -> set[UpstreamState]:
        """The live upstream state this table uses."""
        return {replica.upstream for route in self.routes for replica in route.replicas}


def build_table(config: RouterConfig, plan: RegistryPlan) -> RouteTable:
    """Resolve a validated config against a registry plan (reusing pools, breakers and health).

    Changes nothing that serves: the plan holds what the registry must do once the table is swapped in.
    """
    routes: list[Route] = []
    for rc in config.routes:
        replicas = []
        for ref in rc.upstreams:
            upstream = plan.upstream(config.upstreams[ref.name])
            tracker = None
            if rc.policy.health_check.enabled:
                _, tracker = plan.health(upstream, rc.model, rc.policy.health_check, rc.path)
            continuation = config.upstreams[ref.name].continues
            replicas.append(RouteReplica(ref.name, upstream, ref.weight, tracker, continuation))
        limits = Limits.of(rc.policy.timeout, rc.policy.connect_timeout)
        resume = rc.policy.resume if rc.policy.resume.enabled else None
        routes.append(
            Route(config=rc, replicas=tuple(replicas), limits=limits, options=dict(rc.options), resume=resume)
        )
    _link_fallbacks(routes)
    return RouteTable(config, tuple(routes))


def _link_fallbacks(routes: list[Route]) -> None:
    """Resolve each route's `fallbacks` paths to routes, compared as the validator compares them.

    The validator compares paths ignoring case and a trailing slash, so it accepts `/chat/Other` for a
    route at `/chat/other`; an exact lookup here would silently drop a fallback the user was told is fine.
    """
    by_path = {normalise_path(r.path): r for r in routes}
    for route in routes:
        own = normalise_path(route.path)
        targets = (by_path.get(normalise_path(p)) for p in route.config.fallbacks)
        route.fallbacks = tuple(t for t in targets if t is not None and normalise_path(t.path) != own)
