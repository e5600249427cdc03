// Live health of every route, from /events: the `snapshot` event gives the whole state, `health` and
// `breaker` events change one replica, `reload` means the table itself may have changed.

import { apiKey, headers, url } from "./api.js";
import { readEvents } from "./sse.js";

// A route's state, computed as /status does: it is available while one replica is (health not
// unhealthy, breaker not open); "initial" until probes have spoken; "degraded" when some replica is not healthy.
export function routeState(route) {
  if (!route) return "unknown";
  const available = route.replicas.filter((r) => r.health !== "unhealthy" && r.breaker !== "open");
  if (!available.length) return "unavailable";
  const healths = new Set(route.replicas.map((r) => r.health).filter(Boolean));
  if ([...healths].every((h) => h === "healthy")) return "healthy";
  return healths.has("initial") ? "initial" : "degraded";
}

export const STATE_LABELS = {
  healthy: "healthy",
  initial: "checking",
  degraded: "degraded",
  unavailable: "down",
  unknown: "unknown",
};

export class HealthModel {
  constructor() {
    this.routes = new Map();
  }

  load(snapshot) {
    this.routes = new Map(
      (snapshot.routes || []).map((route) => [
        route.path,
        {
          path: route.path,
          name: route.name,
          model: route.model,
          replicas: route.replicas.map((r) => ({
            upstream: r.upstream,
            health: r.health ? r.health.state : null,
            breaker: r.breaker ? r.breaker.state : "closed",
          })),
        },
      ]),
    );
  }

  applyHealth(event) {
    for (const path of event.routes || []) {
      for (const replica of this.routes.get(path)?.replicas || []) {
        if (replica.upstream === event.upstream) replica.health = event.new;
      }
    }
  }

  applyBreaker(event) {
    for (const route of this.routes.values()) {
      for (const replica of route.replicas) {
        if (replica.upstream === event.upstream) replica.breaker = event.new;
      }
    }
  }

  state(path) {
    return routeState(this.routes.get(path));
  }
}

// Subscribe to /events. EventSource when no API key is set (it reconnects by itself and the router
// sends a fresh snapshot on each connection); with a key, the same stream read through fetch, because
// EventSource cannot send an Authorization header. `on` has snapshot/health/breaker/reload/connection.
export function watchEvents(on) {
  const dispatch = (kind, data) => {
    try {
      on[kind]?.(JSON.parse(data));
    } catch (error) {
      console.warn("bad /events message", kind, error);
    }
  };
  if (!apiKey()) {
    const source = new EventSource(url("/events"));
    for (const kind of ["snapshot", "health", "breaker", "reload"]) {
      source.addEventListener(kind, (event) => dispatch(kind, event.data));
    }
    source.onopen = () => on.connection?.("live");
    source.onerror = () => on.connection?.(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    return () => source.close();
  }
  const controller = new AbortController();
  const sleep = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      controller.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(url("/events"), {
          headers: headers({ Accept: "text/event-stream" }),
          signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          // Live status needs an admin key (or auth.public_status): chat works, badges stay unknown.
          on.connection?.("forbidden");
          await sleep(30000);
          continue;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        on.connection?.("live");
        for await (const event of readEvents(response)) {
          if (event.data !== undefined) dispatch(event.event, event.data);
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      on.connection?.("reconnecting");
      await sleep(2000);
    }
  })();
  return () => controller.abort();
}
