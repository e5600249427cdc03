// Model output to DOM, safely. marked turns Markdown into HTML with raw HTML escaped (a model writing
// "<div>" means the text "<div>", and nothing it writes is ever parsed as markup); DOMPurify then removes
// whatever could still run or load (javascript: links, event handlers, images, forms). The page's
// Content-Security-Policy is the third wall.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html(token) {
      const text = escapeHtml(token.text);
      return token.block ? `<p class="raw-html">${text}</p>` : text;
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["img", "picture", "video", "audio", "source", "style", "form", "input", "button",
    "textarea", "select", "iframe", "object", "embed", "svg", "math"],
  FORBID_ATTR: ["style", "srcset"],
  SANITIZE_NAMED_PROPS: true,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

// A sanitised fragment for `text`; the caller puts it in place with replaceChildren.
export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text || ""), PURIFY);
}
