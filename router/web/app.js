// The chat page: route picker with live health, conversations kept in the browser, streamed answers,
// Stop (the partial answer stays and is context for the next question), errors in plain words, /debug.

import { ApiError, apiKey, getJSON, setApiKey, streamChat, url } from "./api.js";
import { describeError } from "./errors.js";
import { HealthModel, STATE_LABELS, watchEvents } from "./health.js";
import { renderMarkdown } from "./markdown.js";
import { Conversations, historyOf, newId } from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  route: $("route"),
  badge: $("route-health"),
  live: $("live"),
  banner: $("banner"),
  bannerText: $("banner-text"),
  bannerClose: $("banner-close"),
  sidebar: $("sidebar"),
  toggleSidebar: $("toggle-sidebar"),
  newChat: $("new-chat"),
  list: $("conversations"),
  apiKey: $("api-key"),
  title: $("conversation-title"),
  clear: $("clear-chat"),
  remove: $("delete-chat"),
  messages: $("messages"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
};

const ROUTE_STORAGE = "router.route";
const RENDER_EVERY_MS = 40; // re-render a streaming answer at most this often (Markdown is re-parsed)
const BACK_BANNER_MS = 10000;

const state = {
  models: [], // from /v1/models: {id (route name), root (model), route (path)}
  health: new HealthModel(),
  lastState: new Map(), // route path -> last shown state, to notice "down" and "back"
  conversations: new Conversations(),
  busy: null, // {controller, conversation, answer} while an answer streams
  bannerTimer: null,
  stopEvents: null,
};

// ---- route picker and health ------------------------------------------------------------------------

function selectedModel() {
  return state.models.find((m) => m.route === ui.route.value) || null;
}

async function loadModels() {
  try {
    const listing = await getJSON("/v1/models");
    state.models = listing.data || [];
  } catch (error) {
    const { title, hint } = describeError(error);
    showBanner(`Cannot load the list of models. ${title} ${hint}`, "error");
    ui.route.replaceChildren(new Option("no models", ""));
    return;
  }
  if (ui.banner.dataset.kind === "error") hideBanner();
  const wanted = state.conversations.current()?.route || localStorage.getItem(ROUTE_STORAGE);
  const previous = ui.route.value;
  ui.route.replaceChildren(...state.models.map((m) => new Option(m.id, m.route)));
  const paths = state.models.map((m) => m.route);
  ui.route.value = [previous, wanted].find((p) => p && paths.includes(p)) || paths[0] || "";
  ui.route.disabled = !state.models.length;
  updateHealth();
}

function updateHealth() {
  const selected = selectedModel();
  for (const option of ui.route.options) {
    const model = state.models.find((m) => m.route === option.value);
    if (!model) continue;
    const routeState = state.health.state(model.route);
    option.textContent = `${model.id} · ${model.root} (${STATE_LABELS[routeState]})`;
    option.dataset.state = routeState;
    noticeChange(model, routeState, model === selected);
  }
  const routeState = selected ? state.health.state(selected.route) : "unknown";
  ui.badge.dataset.state = routeState;
  ui.badge.textContent = STATE_LABELS[routeState];
  ui.badge.title = selected ? `${selected.root} on ${selected.route}: ${STATE_LABELS[routeState]}` : "";
  ui.route.dataset.state = routeState;
}

// Every route's last state is remembered; a banner tells when the selected model goes down or is back.
function noticeChange(model, routeState, isSelected) {
  if (routeState === "unknown") return;
  const before = state.lastState.get(model.route);
  state.lastState.set(model.route, routeState);
  if (!isSelected || before === undefined || before === routeState) return;
  if (routeState === "unavailable") {
    showBanner(`${model.root} is unavailable. Questions to it will fail until it is back.`, "down");
  } else if (before === "unavailable") {
    showBanner(`${model.root} is back.`, "up", BACK_BANNER_MS);
  }
}

function showBanner(text, kind, hideAfter = 0) {
  clearTimeout(state.bannerTimer);
  ui.bannerText.textContent = text;
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
  if (hideAfter) state.bannerTimer = setTimeout(hideBanner, hideAfter);
}

function hideBanner() {
  clearTimeout(state.bannerTimer);
  ui.banner.hidden = true;
}

function startEvents() {
  state.stopEvents?.();
  state.stopEvents = watchEvents({
    snapshot(snapshot) {
      state.health.load(snapshot);
      updateHealth();
    },
    health(event) {
      state.health.applyHealth(event);
      updateHealth();
    },
    breaker(event) {
      state.health.applyBreaker(event);
      updateHealth();
    },
    async reload() {
      // The table may have changed: routes, models, replicas. Take the whole picture again.
      try {
        state.health.load(await getJSON("/status"));
      } catch {
        /* the next snapshot will do */
      }
      await loadModels();
    },
    connection(status) {
      ui.live.dataset.state = status;
      const labels = { live: "live", reconnecting: "reconnecting…", closed: "offline", forbidden: "no live status" };
      ui.live.textContent = labels[status] || status;
    },
  });
}

// ---- conversations ----------------------------------------------------------------------------------

function current() {
  return state.conversations.current() || state.conversations.create(ui.route.value);
}

function renderList() {
  const active = current();
  const items = state.conversations.list().map((conversation) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "conversation";
    button.textContent = conversation.title;
    button.title = conversation.title;
    if (conversation.id === active.id) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => switchTo(conversation.id));
    item.append(button);
    return item;
  });
  ui.list.replaceChildren(...items);
  ui.title.textContent = active.title;
}

function switchTo(id) {
  const conversation = state.conversations.select(id);
  if (conversation?.route && state.models.some((m) => m.route === conversation.route)) {
    ui.route.value = conversation.route;
    updateHealth();
  }
  renderAll();
  closeSidebarOnNarrow();
  ui.prompt.focus();
}

function renderAll() {
  renderList();
  renderMessages();
  updateComposer();
}

// ---- messages ---------------------------------------------------------------------------------------

const ROLE_LABELS = { user: "You", note: "Route status", error: "Error" };
const STATE_MARKERS = { streaming: "streaming…", interrupted: "interrupted", failed: "cut off" };

function renderMessages() {
  const conversation = current();
  const nodes = conversation.messages.map((message, index) =>
    messageNode(message, index === conversation.messages.length - 1),
  );
  if (!nodes.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "Ask the selected model something. Answers stream in as they are written.";
    nodes.push(empty);
  }
  ui.messages.replaceChildren(...nodes);
  scrollToEnd(true);
}

function messageNode(message, isLast) {
  const node = document.createElement("article");
  node.className = `msg msg-${message.role}`;
  node.dataset.role = message.role;
  node.dataset.id = message.id;
  const head = document.createElement("header");
  head.className = "msg-head";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = ROLE_LABELS[message.role] || message.model || "Assistant";
  head.append(who);
  const marker = document.createElement("span");
  marker.className = "marker";
  head.append(marker);
  const body = document.createElement("div");
  body.className = "content";
  node.append(head, body);
  if (message.role === "error") fillError(node, body, message, isLast);
  else if (message.role === "note") fillNote(body, message);
  updateMessageNode(node, message);
  return node;
}

function updateMessageNode(node, message) {
  if (message.role === "user") {
    node.querySelector(".content").textContent = message.content;
  } else if (message.role === "assistant") {
    node.querySelector(".content").replaceChildren(renderMarkdown(message.content));
  }
  const marker = STATE_MARKERS[message.state] || "";
  node.dataset.state = message.state || "done";
  node.querySelector(".marker").textContent = marker;
  node.querySelector(".marker").hidden = !marker;
  // Screen readers hear the answer once it is complete rather than every token of it.
  node.setAttribute("aria-busy", message.state === "streaming" ? "true" : "false");
}

function fillError(node, body, message, isLast) {
  node.setAttribute("role", "alert");
  const title = document.createElement("p");
  title.className = "error-title";
  title.textContent = message.error.title;
  const hint = document.createElement("p");
  hint.className = "error-hint";
  hint.textContent = message.error.hint || "";
  body.append(title, hint);
  if (message.detail) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Details";
    const text = document.createElement("code");
    text.textContent = message.detail;
    details.append(summary, text);
    body.append(details);
  }
  if (isLast) {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", retryLast);
    body.append(retry);
  }
}

function fillNote(body, message) {
  const info = message.debug;
  const summary = document.createElement("p");
  if (!info) {
    summary.textContent = message.content;
    body.append(summary);
    return;
  }
  summary.textContent = `${info.name} (${info.path}) · model ${info.model} · state ${info.state}`;
  const table = document.createElement("table");
  table.className = "debug";
  const rows = [["upstream", "health", "breaker", "latency", "in flight", "queued"]];
  for (const r of info.replicas) {
    rows.push([
      r.upstream,
      r.health ? r.health.state : "not checked",
      r.breaker.state + (r.breaker.state === "open" ? ` (${r.breaker.retry_after}s left)` : ""),
      r.health && r.health.last_latency_ms != null ? `${r.health.last_latency_ms} ms` : "–",
      String(r.in_flight),
      String(r.queued),
    ]);
  }
  rows.forEach((cells, index) => {
    const row = table.insertRow();
    for (const cell of cells) {
      const td = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) td.scope = "col";
      td.textContent = cell;
      row.append(td);
    }
  });
  body.append(summary, table);
  if (info.errors.length) {
    const errors = document.createElement("p");
    errors.className = "error-hint";
    errors.textContent = `last probe errors: ${info.errors.join("; ")}`;
    body.append(errors);
  }
  const footer = document.createElement("p");
  footer.className = "hint";
  footer.textContent = `config ${info.config} · ${new Date(message.at).toLocaleTimeString()}`;
  body.append(footer);
}

function scrollToEnd(force = false) {
  const box = ui.messages;
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  if (force || nearEnd) box.scrollTop = box.scrollHeight;
}

// One streaming answer is re-rendered at most every RENDER_EVERY_MS, from whatever arrived meanwhile.
let renderTimer = null;
function scheduleAnswerRender(conversation, answer) {
  if (renderTimer) return;
  renderTimer = setTimeout(() => {
    renderTimer = null;
    if (conversation !== state.conversations.current()) return;
    const node = ui.messages.querySelector(`[data-id="${answer.id}"]`);
    if (node) {
      updateMessageNode(node, answer);
      scrollToEnd();
    }
  }, RENDER_EVERY_MS);
}

// ---- asking -----------------------------------------------------------------------------------------

function push(conversation, message) {
  conversation.messages.push({ id: newId(), ...message });
  state.conversations.touch(conversation);
  return conversation.messages.at(-1);
}

async function submit() {
  const text = ui.prompt.value;
  if (state.busy || !text.trim()) return;
  const conversation = current();
  ui.prompt.value = "";
  if (text.trim() === "/debug") {
    await showDebug(conversation);
    return;
  }
  push(conversation, { role: "user", content: text });
  await ask(conversation);
}

async function ask(conversation) {
  const model = selectedModel();
  if (!model) {
    push(conversation, {
      role: "error",
      error: { title: "No model to ask.", hint: "The router lists no routes; check its routing table." },
    });
    renderAll();
    return;
  }
  conversation.route = model.route;
  const messages = historyOf(conversation);
  const answer = push(conversation, {
    role: "assistant",
    content: "",
    state: "streaming",
    model: model.root,
    route: model.route,
  });
  const controller = new AbortController();
  state.busy = { controller, conversation, answer };
  renderAll();
  try {
    await streamChat(model.route, messages, {
      signal: controller.signal,
      onDelta(piece) {
        answer.content += piece;
        scheduleAnswerRender(conversation, answer);
      },
    });
    answer.state = "done";
  } catch (error) {
    if (error.name === "AbortError") {
      answer.state = "interrupted";
    } else {
      const failure = error instanceof ApiError ? error : new ApiError({ message: String(error) });
      if (answer.content) {
        answer.state = "failed";
      } else {
        conversation.messages.splice(conversation.messages.indexOf(answer), 1);
      }
      push(conversation, { role: "error", error: describeError(failure), detail: failure.message });
    }
  } finally {
    clearTimeout(renderTimer);
    renderTimer = null;
    state.busy = null;
    state.conversations.touch(conversation);
    if (conversation === state.conversations.current()) renderAll();
    else renderList();
    updateComposer();
  }
}

function stop() {
  // Aborting the fetch closes the connection; the router then cancels the generation upstream.
  state.busy?.controller.abort();
}

function retryLast() {
  if (state.busy) return;
  const conversation = current();
  const messages = conversation.messages;
  while (messages.length && (messages.at(-1).role === "error" || messages.at(-1).state === "failed")) {
    messages.pop();
  }
  if (messages.at(-1)?.role !== "user") {
    renderAll();
    return;
  }
  ask(conversation);
}

async function showDebug(conversation) {
  const model = selectedModel();
  try {
    const status = await getJSON("/status");
    const route = (status.routes || []).find((r) => r.path === model?.route);
    if (!route) throw new ApiError({ status: 404, message: "the selected route is not in /status" });
    push(conversation, {
      role: "note",
      at: Date.now(),
      debug: {
        name: route.name,
        path: route.path,
        model: route.model,
        state: route.state,
        replicas: route.replicas,
        errors: route.replicas.map((r) => r.health?.last_error).filter(Boolean),
        config: `${(status.config?.sha256 || "").slice(0, 12)} from ${status.config?.source || "?"}`,
      },
    });
  } catch (error) {
    push(conversation, { role: "error", error: describeError(error), detail: error.message });
  }
  renderAll();
}

// ---- composer and layout ----------------------------------------------------------------------------

function updateComposer() {
  const busy = Boolean(state.busy);
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.composer.dataset.busy = String(busy);
}

function closeSidebarOnNarrow() {
  ui.sidebar.dataset.open = "false";
  ui.toggleSidebar.setAttribute("aria-expanded", "false");
}

function wire() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape" && state.busy) {
      event.preventDefault();
      stop();
    }
  });
  ui.stop.addEventListener("click", () => {
    stop();
    ui.prompt.focus();
  });
  ui.route.addEventListener("change", () => {
    localStorage.setItem(ROUTE_STORAGE, ui.route.value);
    const conversation = current();
    conversation.route = ui.route.value;
    state.conversations.save();
    updateHealth();
  });
  ui.newChat.addEventListener("click", () => {
    const empty = state.conversations.list().find((c) => !c.messages.length);
    const conversation = empty || state.conversations.create(ui.route.value);
    switchTo(conversation.id);
  });
  ui.clear.addEventListener("click", () => {
    if (state.busy?.conversation === current()) stop();
    state.conversations.clear(current());
    renderAll();
    ui.prompt.focus();
  });
  ui.remove.addEventListener("click", () => {
    const conversation = current();
    if (state.busy?.conversation === conversation) stop();
    state.conversations.remove(conversation.id);
    renderAll();
    ui.prompt.focus();
  });
  ui.bannerClose.addEventListener("click", hideBanner);
  ui.toggleSidebar.addEventListener("click", () => {
    const open = ui.sidebar.dataset.open !== "true";
    ui.sidebar.dataset.open = String(open);
    ui.toggleSidebar.setAttribute("aria-expanded", String(open));
    if (open) ui.newChat.focus();
  });
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ui.apiKey.dispatchEvent(new Event("change"));
  });
  ui.apiKey.value = apiKey();
  ui.apiKey.addEventListener("change", () => {
    setApiKey(ui.apiKey.value.trim());
    startEvents();
    loadModels();
  });
}

async function main() {
  wire();
  renderAll();
  startEvents();
  await loadModels();
  ui.prompt.focus();
  document.body.dataset.ready = "true";
}

main();

// For tests and curious users: what the page is doing right now.
window.routerChat = { state, url };
