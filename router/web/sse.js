// Reading a text/event-stream body from fetch(): the same framing EventSource understands, but for a
// POST and with our own headers. Comments (": keepalive") come out as {comment}; events as {event, data}.

export class SSEParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
  }

  // Feed decoded text; returns what became complete. A lone "\r" at the end may be half of "\r\n".
  push(text) {
    this.buffer += text;
    const out = [];
    for (;;) {
      const match = /\r\n|\n|\r/.exec(this.buffer);
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line, out);
    }
    return out;
  }

  line(line, out) {
    if (line === "") {
      if (this.data.length) out.push({ event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) {
      out.push({ comment: line.slice(1).trim() });
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
  }
}

// Every event and comment of a fetch Response body, as they arrive. Aborting the request's signal makes
// the pending read reject with an AbortError, which is how Stop ends this loop at once.
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        yield* parser.push(decoder.decode() + "\n\n");
        return;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
