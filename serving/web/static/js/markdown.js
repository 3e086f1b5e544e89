// Model answers as Markdown, rendered by marked and sanitised by DOMPurify (both vendored unchanged under
// ../vendor/, see its README). Contract: `renderMarkdown(text)` returns an HTML string that is safe to assign to
// innerHTML whatever the text holds:
// - raw HTML in the text is never markup: marked's HTML tokenizers are switched off, so `<img onerror=…>` is lexed
//   and escaped as plain text (and shows as typed);
// - links keep only http(s) and mailto targets (any other link shows its label alone) and open in a new tab with
//   rel="noopener noreferrer"; images show their alt text (an answer must not make the browser fetch a URL);
// - citation markers [n] become buttons (.cite-ref, data-cite=n) that chat.js opens as source n;
// - headings move down two levels (answers sit under the page's own headings);
// - DOMPurify then keeps only the tags and attributes this renderer emits, so a bug in the steps above still
//   cannot produce a script, an event handler or a foreign URL.
// No placeholder is ever substituted into the output, so nothing the model writes can be confused with the
// renderer's own markers.

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const SAFE_HREF = /^(?:https?:|mailto:)/i;
const ALLOWED_TAGS = [
  "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h3", "h4", "h5", "h6", "hr",
  "table", "thead", "tbody", "tr", "th", "td", "button",
];
// Attributes whose value is not a URL (DOMPurify tests every other value against ALLOWED_URI_REGEXP).
const PLAIN_ATTR = ["type", "data-cite", "aria-label", "start", "align"];
const ALLOWED_ATTR = ["href", "title", "target", "rel", "class", ...PLAIN_ATTR];

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const citation = {
  name: "citation",
  level: "inline",
  start(src) {
    const at = src.search(/\[\d{1,3}\]/);
    return at < 0 ? undefined : at;
  },
  tokenizer(src) {
    const match = /^\[(\d{1,3})\](?!\()/.exec(src); // [n](url) stays a link
    if (match) return { type: "citation", raw: match[0], n: match[1] };
    return undefined;
  },
  renderer(token) {
    const n = escapeHtml(token.n);
    return `<button type="button" class="cite-ref" data-cite="${n}" aria-label="Show source ${n}">[${n}]</button>`;
  },
};

const marked = new Marked({
  gfm: true,
  breaks: true, // a single newline is a line break, as chat answers are written
  extensions: [citation],
  tokenizer: {
    html() {
      return undefined; // no raw HTML blocks: the text becomes a paragraph of plain text
    },
    tag() {
      return undefined; // no inline raw HTML either
    },
  },
  renderer: {
    heading({ tokens, depth }) {
      const level = Math.min(depth + 2, 6);
      return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`;
    },
    link({ href, tokens }) {
      if (!SAFE_HREF.test(href || "")) return this.parser.parseInline(tokens); // the label only
      return false; // marked's own rendering (it escapes the URL and the title); target and rel are added below
    },
    image({ text }) {
      return escapeHtml(text || "");
    },
  },
});

const purifier = DOMPurify(window); // this renderer's own instance: its hook does not affect anyone else's
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName !== "A") return;
  if (!SAFE_HREF.test(node.getAttribute("href") || "")) node.removeAttribute("href");
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer");
});

export function renderMarkdown(source) {
  const html = marked.parse(String(source || ""), { async: false });
  return purifier.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: SAFE_HREF,
    ADD_URI_SAFE_ATTR: PLAIN_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
  });
}
