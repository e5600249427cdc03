// Talking to the router: the models list, /status, and one streamed chat answer.
// URLs are relative to the page, so the page keeps working behind a reverse proxy under a prefix.

import { readEvents } from "./sse.js";

const KEY_STORAGE = "router.apiKey";

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lasts until the page is closed */
  }
}

export function url(path) {
  return path.replace(/^\/+/, "");
}

export function headers(extra = {}) {
  const all = { ...extra };
  const key = apiKey();
  if (key) all.Authorization = `Bearer ${key}`;
  return all;
}

// A failure the page can explain: the HTTP status (0 when there was none) and the OpenAI error fields.
export class ApiError extends Error {
  constructor({ status = 0, type = "", code = "", message = "", retryAfter = null, midStream = false }) {
    super(message || "request failed");
    this.name = "ApiError";
    this.status = status;
    this.type = type || "";
    this.code = code || "";
    this.retryAfter = retryAfter;
    this.midStream = midStream;
  }
}

function isAbort(error) {
  return error && error.name === "AbortError";
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: a proxy's page */
  }
  const error = (body && body.error) || {};
  return new ApiError({
    status: response.status,
    type: error.type,
    code: error.code,
    message: error.message || `${response.status} ${response.statusText}`,
    retryAfter: response.headers.get("Retry-After"),
  });
}

async function send(path, init) {
  try {
    return await fetch(url(path), init);
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ApiError({ code: "network", message: String(error.message || error) });
  }
}

export async function getJSON(path, signal) {
  const response = await send(path, { headers: headers({ Accept: "application/json" }), signal });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// One answer, streamed. `onDelta(text)` gets every content piece as it arrives; resolves with the
// finish reason at `data: [DONE]`; throws ApiError for an HTTP error, an in-stream error event or a cut
// connection, and an AbortError when `signal` aborts (Stop).
export async function streamChat(path, messages, { signal, onDelta }) {
  const response = await send(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ messages, stream: true }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  let finish = null;
  try {
    for await (const event of readEvents(response)) {
      if (event.comment !== undefined) continue; // ": keepalive" while the model thinks
      if (event.data === "[DONE]") return finish;
      let chunk;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        throw new ApiError({ code: "bad_stream", message: "the router sent an unreadable event" });
      }
      if (chunk.error) throw new ApiError({ ...chunk.error, midStream: true });
      for (const choice of chunk.choices || []) {
        const piece = choice.delta && choice.delta.content;
        if (piece) onDelta(piece);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  } catch (error) {
    if (isAbort(error) || error instanceof ApiError) throw error;
    throw new ApiError({ code: "stream_cut", message: String(error.message || error), midStream: true });
  }
  throw new ApiError({
    code: "stream_cut",
    message: "the connection closed before the answer was complete",
    midStream: true,
  });
}
