// Conversations kept in this browser's localStorage. Each one is the whole history the page sends with
// every question, so an interrupted answer stays context for the next question.
//
// conversation: {id, title, route, created, updated, messages: [message]}
// message: {id, role: "user" | "assistant" | "note" | "error", content, state, ...}
//   assistant state: "streaming" | "done" | "interrupted" (Stop) | "failed" (cut off by an error)

const STORAGE = "router.conversations.v1";
const CURRENT = "router.current.v1";

export function newId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

export function titleOf(conversation) {
  const first = conversation.messages.find((m) => m.role === "user" && m.content);
  if (!first) return "New conversation";
  const text = first.content.replace(/\s+/g, " ").trim();
  return text.length > 48 ? `${text.slice(0, 47)}…` : text;
}

// What the model is sent: the user and assistant turns with text, partial answers included.
export function historyOf(conversation) {
  return conversation.messages
    .filter((m) => (m.role === "user" || m.role === "assistant") && m.content)
    .map((m) => ({ role: m.role, content: m.content }));
}

export class Conversations {
  constructor(storage = globalThis.localStorage) {
    this.storage = storage;
    this.items = this.read();
    this.currentId = this.get(this.storage?.getItem(CURRENT))?.id ?? null;
  }

  read() {
    try {
      const items = JSON.parse(this.storage.getItem(STORAGE) || "[]");
      if (!Array.isArray(items)) return [];
      for (const conversation of items) {
        for (const message of conversation.messages || []) {
          // The page was closed while an answer streamed: what arrived is a partial answer.
          if (message.state === "streaming") message.state = "interrupted";
        }
      }
      return items.filter((c) => c && c.id && Array.isArray(c.messages));
    } catch {
      return [];
    }
  }

  save() {
    try {
      this.storage.setItem(STORAGE, JSON.stringify(this.items));
      if (this.currentId) this.storage.setItem(CURRENT, this.currentId);
    } catch (error) {
      console.warn("conversations not saved (storage full or disabled):", error);
    }
  }

  list() {
    return [...this.items].sort((a, b) => b.updated - a.updated);
  }

  get(id) {
    return this.items.find((c) => c.id === id) || null;
  }

  current() {
    return this.get(this.currentId);
  }

  create(route) {
    const now = Date.now();
    const conversation = { id: newId(), title: "New conversation", route, created: now, updated: now, messages: [] };
    this.items.push(conversation);
    this.currentId = conversation.id;
    this.save();
    return conversation;
  }

  select(id) {
    if (this.get(id)) {
      this.currentId = id;
      this.save();
    }
    return this.current();
  }

  touch(conversation) {
    conversation.updated = Date.now();
    conversation.title = titleOf(conversation);
    this.save();
  }

  clear(conversation) {
    conversation.messages = [];
    this.touch(conversation);
  }

  remove(id) {
    this.items = this.items.filter((c) => c.id !== id);
    if (this.currentId === id) this.currentId = this.list()[0]?.id ?? null;
    this.save();
  }
}
