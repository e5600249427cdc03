// Errors in plain words: what happened and what to do, from the OpenAI error status/type/code.

function seconds(retryAfter) {
  const n = Number(retryAfter);
  return Number.isFinite(n) && n > 0 ? Math.ceil(n) : null;
}

export function describeError(error) {
  const status = error.status || 0;
  const type = error.type || "";
  const code = error.code || "";
  if (code === "network") {
    return {
      kind: "network",
      title: "Cannot reach the router.",
      hint: "Check that it is running and that you are online, then retry.",
    };
  }
  if (status === 401 || type === "authentication_error") {
    return {
      kind: "auth",
      title: "The router did not accept your API key.",
      hint: "Set a valid key under Settings, then retry.",
    };
  }
  if (status === 403 || type === "permission_error") {
    return { kind: "auth", title: "Your API key may not use this model.", hint: "Pick another model or key." };
  }
  if (status === 429 || type === "rate_limit_error") {
    const wait = seconds(error.retryAfter);
    return {
      kind: "rate_limited",
      title: "Rate-limited: the model is busy with other requests.",
      hint: wait ? `Wait ${wait} s, then retry.` : "Wait a moment, then retry.",
    };
  }
  if (code === "upstream_stalled") {
    return {
      kind: "timeout",
      title: "The model stopped sending in the middle of its answer (timeout).",
      hint: "Retry; if it keeps happening the model server may be overloaded.",
    };
  }
  if (status === 504 || type === "timeout" || code.includes("timeout")) {
    return {
      kind: "timeout",
      title: "The model took too long to answer (timeout).",
      hint: "Retry, or ask a shorter question.",
    };
  }
  if (status === 503 || code === "upstream_unavailable") {
    const wait = seconds(error.retryAfter);
    return {
      kind: "unavailable",
      title: "The model is unavailable right now.",
      hint: wait
        ? `It may be down or restarting; retry in about ${wait} s.`
        : "It may be down or restarting; retry when its badge is green again.",
    };
  }
  if (code === "model_not_found" && status === 404) {
    return { kind: "not_found", title: "This model is not available here.", hint: "Pick another model." };
  }
  if (status === 413) {
    return {
      kind: "too_large",
      title: "This conversation is too long for the router.",
      hint: "Start a new conversation.",
    };
  }
  if (status === 400) {
    return { kind: "invalid", title: "The router refused the request.", hint: error.message };
  }
  if (error.midStream || code === "stream_cut") {
    return {
      kind: "cut_off",
      title: "The answer was cut off by a failure.",
      hint: "Retry to ask again.",
    };
  }
  if (status >= 500) {
    return {
      kind: "server",
      title: "The model's server failed to answer.",
      hint: "Retry; if it keeps failing, the server may be restarting.",
    };
  }
  return { kind: "unknown", title: "Something went wrong.", hint: "Retry." };
}
