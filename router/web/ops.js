// The operations page: the routing table with live health, breakers and load; charts of requests/s,
// latency and tokens/s per route; token use per key; the reload history with each diff.
//
// Fed by /status (the table), /events (changes, so a route going down shows at once), /ops/series (the
// router's counters sampled every second) and /usage when the router has it. All of them need the admin
// key when keys are configured (or auth.public_status); the key is the one the chat page keeps.
// Everything from the router is put in the page as text (textContent), never parsed as HTML.

import { ApiError, apiKey, getJSON, setApiKey } from "./api.js";
import { watchEvents } from "./health.js";

const SERIES_EVERY_MS = 1000;
const STATUS_EVERY_MS = 2000;
const USAGE_EVERY_MS = 10000;
const CHART_HEIGHT = 220;
const MIN_WINDOW_S = 60;
const COLOURS = ["#2456d3", "#1f8a4c", "#c53030", "#b7791f", "#7b3fc4", "#0f8a8a", "#d35a24", "#5d6677"];

const $ = (id) => document.getElementById(id);
const ui = {
  config: $("config"),
  live: $("live"),
  notice: $("notice"),
  keyBox: $("key-box"),
  keyForm: $("key-form"),
  apiKey: $("api-key"),
  routes: $("routes").tBodies[0],
  usage: $("usage").tBodies[0],
  usageNote: $("usage-note"),
  usageDetails: $("usage-details"),
  usageRaw: $("usage-raw"),
  reloads: $("reloads"),
  reloadsEmpty: $("reloads-empty"),
};

const state = {
  charts: new Map(), // chart id -> {plot, key}
  usage: undefined, // undefined: not asked yet; null: the router has no /usage; else its document
  stopEvents: null,
  statusTimer: null,
};

// ---- small DOM helpers -------------------------------------------------------------------------------

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function row(cells, attrs = {}) {
  const tr = el("tr", null, attrs);
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function badge(text, stateName) {
  const td = el("td");
  td.append(el("span", text, { class: "badge", "data-state": stateName }));
  return td;
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function number(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

function explain(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    ui.keyBox.open = true;
    return "The operations data needs the admin key (or auth.public_status: true in the table): enter it under Admin key.";
  }
  return `Cannot reach the router: ${error.message || error}`;
}

// ---- the routing table -------------------------------------------------------------------------------

function renderStatus(status) {
  const config = status.config || {};
  ui.config.textContent = `table ${config.sha256 ? config.sha256.slice(0, 12) : "?"} · ${config.source || ""}`;
  ui.config.dataset.sha256 = config.sha256 || "";
  const rows = [];
  for (const route of status.routes || []) {
    const replicas = route.replicas.length ? route.replicas : [null];
    replicas.forEach((replica, index) => {
      const cells = [];
      if (index === 0) {
        const span = { rowspan: String(replicas.length) };
        cells.push(el("th", route.path, { scope: "row", ...span }));
        cells.push(el("td", route.model, span));
        const stateCell = badge(route.state, route.state);
        stateCell.setAttribute("rowspan", String(replicas.length));
        stateCell.classList.add("route-state");
        cells.push(stateCell);
      }
      if (replica) {
        const health = replica.health ? replica.health.state : "unchecked";
        const breaker = replica.breaker ? replica.breaker.state : "closed";
        cells.push(el("td", replica.upstream));
        const healthCell = badge(health, health);
        if (replica.health && replica.health.last_error) healthCell.title = replica.health.last_error;
        cells.push(healthCell, badge(breaker, breaker));
        cells.push(el("td", number(replica.in_flight), { class: "num" }));
        cells.push(el("td", number(replica.queued), { class: "num" }));
      }
      const tr = row(cells, { "data-route": route.path });
      if (replica) tr.dataset.upstream = replica.upstream;
      tr.dataset.state = route.state;
      rows.push(tr);
    });
  }
  ui.routes.replaceChildren(...rows);
}

async function refreshStatus() {
  try {
    renderStatus(await getJSON("/status"));
    return true;
  } catch (error) {
    showNotice(explain(error));
    return false;
  }
}

// Changes arrive on /events; the table is re-read at once so it also shows the load that came with them.
function scheduleStatus(delay) {
  clearTimeout(state.statusTimer);
  state.statusTimer = setTimeout(async () => {
    await refreshStatus();
    scheduleStatus(STATUS_EVERY_MS);
  }, delay);
}

// ---- charts ------------------------------------------------------------------------------------------

function chartSeries(series, columns) {
  const specs = [];
  const data = [series.time];
  Object.keys(series.routes).forEach((route, index) => {
    const colour = COLOURS[index % COLOURS.length];
    for (const { column, label, dash } of columns) {
      specs.push({ label: `${label}${route}`, stroke: colour, width: 2, dash, spanGaps: false });
      data.push(series.routes[route][column]);
    }
  });
  return { specs, data };
}

function drawChart(id, series, columns, axisLabel) {
  const container = $(id);
  const { specs, data } = chartSeries(series, columns);
  const key = specs.map((s) => s.label).join("|");
  const points = data.slice(1).reduce((n, column) => n + column.filter((v) => v !== null && v > 0).length, 0);
  container.dataset.points = String(points);
  container.dataset.series = key;
  const existing = state.charts.get(id);
  if (existing && existing.key === key) {
    existing.plot.setData(data);
    return;
  }
  if (existing) existing.plot.destroy();
  const options = {
    width: Math.max(container.clientWidth, 280),
    height: CHART_HEIGHT,
    scales: {
      // At least a minute wide, so the first samples do not stretch over an axis of years.
      x: { time: true, range: (_, min, max) => [min, Math.max(max, min + MIN_WINDOW_S)] },
      y: { range: (_, min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    axes: [{}, { label: axisLabel, size: 60 }],
    series: [{ label: "time" }, ...specs],
    legend: { live: true },
  };
  state.charts.set(id, { key, plot: new globalThis.uPlot(options, data, container) });
}

function resizeCharts() {
  for (const [id, { plot }] of state.charts) {
    plot.setSize({ width: Math.max($(id).clientWidth, 280), height: CHART_HEIGHT });
  }
}

// ---- token use per key -------------------------------------------------------------------------------

function renderUsage(series) {
  const tokens = series.tokens_by_key || {};
  const quotas = new Map();
  for (const q of series.quotas || []) {
    if (!quotas.has(q.key)) quotas.set(q.key, []);
    quotas.get(q.key).push(q);
  }
  const keys = [...new Set([...Object.keys(tokens), ...quotas.keys()])].sort();
  const rows = [];
  for (const key of keys) {
    const limits = quotas.get(key) || [null];
    for (const q of limits) {
      const share = q && q.limit ? q.used / q.limit : null;
      const used = el("td", share === null ? "–" : `${number(share * 100, 1)}%`, { class: "num" });
      if (share !== null) {
        const meter = el("meter", null, { min: "0", max: "1", low: "0.75", high: "0.9", optimum: "0" });
        meter.value = Math.min(share, 1);
        used.prepend(meter);
      }
      rows.push(
        row(
          [
            el("th", key, { scope: "row" }),
            el("td", number(tokens[key]), { class: "num" }),
            el("td", q ? `${number(q.used)} / ${number(q.limit)} ${q.quota}` : "no quota"),
            used,
          ],
          { "data-key": key },
        ),
      );
    }
  }
  ui.usage.replaceChildren(...rows);
  const notes = [];
  if (!keys.length) {
    notes.push("No per-key figures yet: they come from the router's metrics (tokens per key, quotas) once it counts them.");
  }
  if (state.usage === null) notes.push("This router has no GET /usage.");
  ui.usageNote.textContent = notes.join(" ");
  // The usage endpoint's own document (per key and route, today and recent days), as it answers.
  ui.usageDetails.hidden = !state.usage;
  if (state.usage) ui.usageRaw.textContent = JSON.stringify(state.usage, null, 2);
}

async function refreshUsage() {
  try {
    state.usage = await getJSON("/usage");
  } catch (error) {
    // 404: a router without the usage endpoint; 401/403 are explained by the other panels already.
    if (error instanceof ApiError && error.status === 404) state.usage = null;
  }
}

// ---- reloads -----------------------------------------------------------------------------------------

function renderReloads(reloads) {
  const items = [...reloads].reverse().map((reload) => {
    const item = el("li", null, { class: "reload", "data-ok": String(reload.ok) });
    const head = el("div", null, { class: "reload-head" });
    head.append(
      el("span", reload.ok ? "applied" : "refused", { class: "badge", "data-state": reload.ok ? "healthy" : "unavailable" }),
      el("time", when(reload.time), { datetime: new Date(reload.time * 1000).toISOString() }),
      el("span", `on ${reload.trigger || "?"}`),
      el("code", reload.sha256 ? reload.sha256.slice(0, 12) : ""),
    );
    item.append(head);
    const lines = reload.ok ? reload.changes : reload.problems;
    const diff = el("ul", null, { class: reload.ok ? "diff" : "problems" });
    for (const line of lines.length ? lines : ["no change"]) diff.append(el("li", line));
    item.append(diff);
    return item;
  });
  ui.reloads.replaceChildren(...items);
  ui.reloadsEmpty.hidden = items.length > 0;
}

// ---- the series poll ---------------------------------------------------------------------------------

// The samples seen so far, as columns: the first request fetches what the router kept, later ones only
// what is newer (`since`). A pause longer than a few intervals (the router samples only while watched)
// gets a row of nulls, so the charts show a gap instead of a line across it.
const local = { time: [], routes: {} };

function merge(doc) {
  const columns = (route) => Object.keys(doc.routes[route] || {});
  let times = doc.time;
  let fresh = doc.routes;
  const last = local.time[local.time.length - 1];
  if (times.length && last !== undefined && times[0] - last > 3 * doc.interval) {
    times = [last + doc.interval, ...times];
    fresh = Object.fromEntries(
      Object.entries(doc.routes).map(([route, cols]) => [
        route,
        Object.fromEntries(Object.entries(cols).map(([c, v]) => [c, [null, ...v]])),
      ]),
    );
  }
  for (const route of Object.keys(fresh)) {
    if (!local.routes[route]) {
      local.routes[route] = Object.fromEntries(columns(route).map((c) => [c, local.time.map(() => null)]));
    }
  }
  for (const [route, cols] of Object.entries(local.routes)) {
    for (const [column, values] of Object.entries(cols)) {
      const add = fresh[route] ? fresh[route][column] : times.map(() => null);
      values.push(...add);
    }
  }
  local.time.push(...times);
  const excess = local.time.length - doc.capacity;
  if (excess > 0) {
    local.time.splice(0, excess);
    for (const cols of Object.values(local.routes)) for (const values of Object.values(cols)) values.splice(0, excess);
  }
  // A route a reload removed leaves the charts once its last sample has scrolled out.
  for (const [route, cols] of Object.entries(local.routes)) {
    if (Object.values(cols).every((values) => values.every((v) => v === null))) delete local.routes[route];
  }
  return { ...doc, time: local.time, routes: local.routes };
}

async function refreshSeries() {
  try {
    const last = local.time[local.time.length - 1];
    const series = merge(await getJSON(last === undefined ? "/ops/series" : `/ops/series?since=${last}`));
    drawChart("chart-rps", series, [{ column: "requests_per_second", label: "" }], "req/s");
    drawChart(
      "chart-latency",
      series,
      [
        { column: "latency_p50", label: "p50 " },
        { column: "latency_p99", label: "p99 ", dash: [6, 4] },
      ],
      "seconds",
    );
    drawChart("chart-tokens", series, [{ column: "tokens_per_second", label: "" }], "tokens/s");
    renderUsage(series);
    renderReloads(series.reloads || []);
    showNotice("");
    return true;
  } catch (error) {
    showNotice(explain(error));
    return false;
  }
}

function setLive(connection) {
  const labels = { live: "live", reconnecting: "reconnecting…", closed: "disconnected", forbidden: "needs the admin key" };
  ui.live.dataset.state = connection;
  ui.live.textContent = labels[connection] || connection;
}

function connect() {
  if (state.stopEvents) state.stopEvents();
  state.stopEvents = watchEvents({
    snapshot: renderStatus,
    health: () => scheduleStatus(0),
    breaker: () => scheduleStatus(0),
    reload: () => {
      scheduleStatus(0);
      refreshSeries();
    },
    connection: setLive,
  });
}

async function start() {
  ui.apiKey.value = apiKey();
  ui.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(ui.apiKey.value.trim());
    connect();
    await Promise.all([refreshStatus(), refreshSeries(), refreshUsage()]);
  });
  window.addEventListener("resize", resizeCharts);
  await refreshUsage();
  await Promise.all([refreshStatus(), refreshSeries()]);
  connect();
  scheduleStatus(STATUS_EVERY_MS);
  setInterval(refreshSeries, SERIES_EVERY_MS);
  setInterval(refreshUsage, USAGE_EVERY_MS);
  document.body.dataset.ready = "true";
}

start();
