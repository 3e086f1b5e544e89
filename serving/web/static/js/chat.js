// The chat page: stored conversations in a sidebar, the model/adapter and collection pickers, answers streamed
// over SSE and rendered as Markdown, numbered citations that open the cited passage, and thumbs up/down feedback
// with an optional corrected answer (POST /v1/feedback), which becomes a preference pair for training.
//
// `mount` builds the page object (its elements and the conversation's state) and wires it; the pieces below take
// that object: render pieces build elements, handlers react to the user, API calls fetch. The answer's Markdown is
// rendered by markdown.js (sanitised by DOMPurify); everything else is set as text.

import { api, session, streamChat } from "./api.js";
import { activeAdapters, listCollections, listModels, MODELS_CHANGED } from "./data.js";
import { renderMarkdown } from "./markdown.js";
import { clear, formatDate, h, poller, setStatus } from "./ui.js";

const MODEL_KEY = "assistant.model";
let turnCounter = 0;

export function mount(container) {
  const page = buildPage();
  container.append(page.root);
  clear(page.messages, emptyState());
  bindComposer(page);
  const onModelsChanged = () => refreshModels(page);
  window.addEventListener(MODELS_CHANGED, onModelsChanged);
  const modelPoll = poller(() => refreshModels(page), 10000); // another admin's activation shows up too
  refreshModels(page);
  refreshCollections(page);
  refreshConversations(page);
  page.prompt.focus();
  return () => {
    modelPoll.stop();
    window.removeEventListener(MODELS_CHANGED, onModelsChanged);
    page.state.controller?.abort();
  };
}

// ------------------------------------------------------------------ the page

function buildPage() {
  const page = {
    state: { history: [], chatId: null, controller: null },
    modelSelect: h("select", { id: "model", "aria-describedby": "model-hint" }),
    collectionSelect: h("select", { id: "collection" }),
    messages: h("div", { class: "messages", id: "messages", "aria-live": "polite" }),
    prompt: h("textarea", {
      id: "prompt",
      rows: 2,
      placeholder: "Ask about your documents… (Enter sends, Shift+Enter adds a line)",
      required: true,
    }),
    sendButton: h("button", { type: "submit", id: "send" }, "Send"),
    stopButton: h("button", { type: "button", class: "secondary", hidden: true }, "Stop"),
    conversations: h("ul", { class: "conversations", id: "conversations" }),
    sidebarStatus: h("p", { class: "status", role: "status" }),
    pickerStatus: h("span", { id: "model-hint", class: "hint" }),
  };
  page.root = h("div", { class: "chat-layout" }, sidebar(page), chatMain(page));
  return page;
}

function sidebar(page) {
  return h(
    "aside",
    { class: "chat-sidebar", "aria-labelledby": "conv-title" },
    h("button", { type: "button", class: "new-chat", onclick: () => newChat(page) }, "+ New chat"),
    h("h2", { id: "conv-title" }, "Conversations"),
    page.conversations,
    page.sidebarStatus,
  );
}

function chatMain(page) {
  return h(
    "section",
    { class: "chat-main", "aria-label": "Chat" },
    h("h1", { class: "sr-only" }, "Chat"),
    h(
      "div",
      { class: "chat-toolbar" },
      h("label", { for: "model" }, "Model ", page.modelSelect),
      h("label", { for: "collection" }, "Collection ", page.collectionSelect),
      page.pickerStatus,
    ),
    page.messages,
    composer(page),
  );
}

function composer(page) {
  return h(
    "form",
    { class: "composer", onsubmit: (event) => onSubmit(page, event) },
    h("label", { for: "prompt", class: "sr-only" }, "Message"),
    page.prompt,
    h("div", { class: "composer-actions" }, page.sendButton, page.stopButton),
  );
}

// ------------------------------------------------------------------ handlers

function bindComposer(page) {
  page.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });
  page.stopButton.addEventListener("click", () => page.state.controller?.abort());
  page.modelSelect.addEventListener("change", () => sessionStorage.setItem(MODEL_KEY, page.modelSelect.value));
}

function onSubmit(page, event) {
  event.preventDefault();
  const text = page.prompt.value.trim();
  if (text && !page.state.controller) ask(page, text);
}

function newChat(page) {
  page.state.history = [];
  page.state.chatId = null;
  clear(page.messages, emptyState());
  markCurrent(page.conversations, null);
  page.prompt.focus();
}

// Sends the question with the conversation so far and streams the answer into a new turn.
async function ask(page, text) {
  const { state, messages } = page;
  page.prompt.value = "";
  messages.querySelector(".empty")?.remove();
  state.history.push({ role: "user", content: text });
  messages.append(userTurn(text));
  const turn = assistantTurn(page.modelSelect.value);
  messages.append(turn.el);
  turn.el.scrollIntoView({ block: "end" });
  setBusy(page, new AbortController());
  try {
    const { answer, final } = await streamAnswer(chatRequest(page), state.controller.signal, turn);
    state.history.push({ role: "assistant", content: answer });
    turn.finish(final);
    state.chatId = final?.id || state.chatId;
    refreshConversations(page);
  } catch (exc) {
    state.history.pop();
    turn.fail(exc.name === "AbortError" ? "Stopped." : exc.message);
  } finally {
    setBusy(page, null);
    page.prompt.focus();
  }
}

function chatRequest(page) {
  const body = { model: page.modelSelect.value, messages: page.state.history.slice() };
  if (page.collectionSelect.value) body.collections = [page.collectionSelect.value];
  return body;
}

// While an answer streams: Send is off, Stop shows, and the controller aborts the stream.
function setBusy(page, controller) {
  page.state.controller = controller;
  page.sendButton.disabled = !!controller;
  page.stopButton.hidden = !controller;
}

// Reads the SSE stream into the turn; returns the whole answer and the final chunk (the one with the citations).
async function streamAnswer(body, signal, turn) {
  let answer = "";
  let final = null;
  let pieces = 0;
  for await (const chunk of streamChat(body, signal)) {
    const delta = chunk.choices?.[0]?.delta?.content;
    if (delta) {
      answer += delta;
      turn.setText(answer);
      turn.el.dataset.chunks = String(++pieces); // how many streamed pieces arrived (the answer grew live)
    }
    if (chunk.citations) final = chunk;
  }
  return { answer, final };
}

// ------------------------------------------------------------------ pickers and the sidebar

async function refreshModels(page) {
  try {
    const [models, active] = await Promise.all([listModels(), activeAdapters()]);
    fillModels(page.modelSelect, models, active);
    page.pickerStatus.textContent = "";
  } catch (exc) {
    page.pickerStatus.textContent = `Models could not be listed: ${exc.message}`;
  }
}

async function refreshCollections(page) {
  const select = page.collectionSelect;
  try {
    const names = await listCollections();
    const current = select.value;
    const all = session.me?.collections ? `All my collections (${names.join(", ")})` : "All collections";
    clear(select, h("option", { value: "" }, all), names.map((name) => h("option", { value: name }, name)));
    select.value = names.includes(current) ? current : "";
  } catch (exc) {
    page.pickerStatus.textContent = `Collections could not be listed: ${exc.message}`;
  }
}

async function refreshConversations(page) {
  try {
    const body = await api("/v1/chats?limit=50");
    const items = (body.data || []).slice().sort((a, b) => (b.created || 0) - (a.created || 0));
    clear(page.conversations, items.map((record) => conversationItem(page, record)));
    setStatus(page.sidebarStatus, items.length ? "" : "No conversations yet.");
    markCurrent(page.conversations, page.state.chatId);
  } catch (exc) {
    setStatus(page.sidebarStatus, `Conversations could not be loaded: ${exc.message}`, "error");
  }
}

function conversationItem(page, record) {
  return h(
    "li",
    {},
    h(
      "button",
      { type: "button", class: "conv", dataset: { id: record.id }, onclick: () => openRecord(page, record.id) },
      h("span", { class: "conv-title" }, conversationTitle(record)),
      h("small", {}, `${formatDate(record.created)} · ${record.model}`),
    ),
  );
}

// Opens a stored conversation: its turns replace the page's, and it continues from there.
async function openRecord(page, id) {
  try {
    const record = await api(`/v1/chats/${encodeURIComponent(id)}`);
    page.state.chatId = record.id;
    page.state.history = [...(record.messages || []).filter((m) => m.role !== "system")];
    page.state.history.push({ role: "assistant", content: record.answer || "" });
    clear(page.messages, recordTurns(record, page.state.history));
    markCurrent(page.conversations, record.id);
    if ([...page.modelSelect.options].some((o) => o.value === record.model)) page.modelSelect.value = record.model;
    page.prompt.focus();
  } catch (exc) {
    setStatus(page.sidebarStatus, `That conversation could not be opened: ${exc.message}`, "error");
  }
}

// The stored turns; the last answer carries the record's citations and sources (and so its feedback controls).
function recordTurns(record, turns) {
  return turns.map((message, i) => {
    if (message.role === "user") return userTurn(message.content);
    const turn = assistantTurn(record.model);
    turn.setText(message.content);
    const last = i === turns.length - 1;
    turn.finish(last ? { id: record.id, citations: record.citations || [], sources: record.sources || [] } : null);
    return turn.el;
  });
}

function emptyState() {
  return h(
    "div",
    { class: "empty" },
    h("p", {}, "Ask a question: the answer cites the passages of your documents it is grounded in."),
  );
}

function conversationTitle(record) {
  if (record.title) return record.title;
  const users = (record.messages || []).filter((m) => m.role === "user");
  const text = users.length ? users[users.length - 1].content : record.id;
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

function markCurrent(list, id) {
  for (const button of list.querySelectorAll("button.conv")) {
    if (id && button.dataset.id === id) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

// Options: the base model, each adapter alias (following its active version) and each pinned version.
function fillModels(select, models, active) {
  const wanted = select.value || sessionStorage.getItem(MODEL_KEY);
  const base = models.filter((m) => !m.parent);
  const aliases = models.filter((m) => m.parent && !m.id.includes("@v"));
  const versions = models.filter((m) => m.id.includes("@v"));
  const option = (m, label) => h("option", { value: m.id }, label);
  clear(
    select,
    h("optgroup", { label: "Base model" }, base.map((m) => option(m, m.id))),
    aliases.length
      ? h(
          "optgroup",
          { label: "Adapters (active version)" },
          aliases.map((m) => option(m, active[m.id] ? `${m.id} → ${active[m.id]}` : `${m.id} (active version)`)),
        )
      : null,
    versions.length ? h("optgroup", { label: "Pinned versions" }, versions.map((m) => option(m, m.id))) : null,
  );
  const ids = models.map((m) => m.id);
  select.value = ids.includes(wanted) ? wanted : base[0]?.id || ids[0] || "";
}

function userTurn(text) {
  return h("article", { class: "turn user", "aria-label": "You" }, h("div", { class: "bubble" }, text));
}

// An assistant answer: Markdown body, then (when finished) its sources and the feedback controls.
function assistantTurn(model) {
  const id = `turn-${++turnCounter}`;
  const { el, body, extras } = assistantTurnElements(id, model);
  let frame = null;
  let latest = "";
  const paint = () => {
    body.innerHTML = renderMarkdown(latest); // sanitised HTML: the answer's own HTML is text, links http(s) only
    frame = null;
  };
  const settle = () => {
    if (frame) cancelAnimationFrame(frame);
    body.setAttribute("aria-busy", "false");
  };
  return {
    el,
    setText(text) {
      latest = text;
      if (!frame) frame = requestAnimationFrame(paint);
    },
    finish(final) {
      settle();
      paint();
      if (!latest.trim()) body.append(h("p", { class: "hint" }, "(empty answer)"));
      if (final) finishTurn(id, el, extras, final);
    },
    fail(message) {
      settle();
      if (latest) paint();
      else clear(body);
      extras.append(h("p", { class: "status status-error", role: "alert" }, message));
    },
  };
}

function assistantTurnElements(id, model) {
  const body = h("div", { class: "markdown", "aria-busy": "true" }, h("span", { class: "typing" }, "…"));
  const extras = h("div", { class: "turn-extras" });
  const el = h(
    "article",
    { class: "turn assistant", id, "aria-label": "Assistant" },
    h("div", { class: "turn-meta" }, `Assistant · ${model}`),
    h("div", { class: "bubble" }, body, extras),
  );
  body.addEventListener("click", (event) => {
    const ref = event.target.closest(".cite-ref");
    if (ref) openCitation(el, ref.dataset.cite);
  });
  return { el, body, extras };
}

// A finished answer with a stored id: its sources and the feedback controls.
function finishTurn(id, el, extras, final) {
  el.dataset.responseId = final.id;
  extras.append(citationList(id, final.citations || [], final.sources || [], final.retrieval));
  extras.append(feedbackControls(id, final.id));
}

function openCitation(turnEl, n) {
  const details = turnEl.querySelector(`details[data-cite="${CSS.escape(String(n))}"]`);
  if (!details) return;
  details.open = true;
  details.querySelector("summary").focus();
  details.scrollIntoView({ block: "nearest" });
}

function citationLabel(c) {
  const where = [c.page != null ? `p. ${c.page}` : null, c.section ? `§ ${c.section}` : null].filter(Boolean);
  return `${c.title || c.source || c.document_id}${where.length ? ` — ${where.join(" · ")}` : ""}`;
}

const NO_SOURCES = {
  no_documents: "no documents in the searched collections",
  no_relevant_sources: "no passage was relevant enough",
  off: "retrieval was off",
};

function citationList(turnId, citations, sources, retrieval) {
  if (!citations.length) {
    const why = NO_SOURCES[retrieval];
    return h("p", { class: "hint" }, `No sources${why ? `: ${why}` : ""}.`);
  }
  const text = new Map(sources.map((s) => [s.index, s.text]));
  return h(
    "section",
    { class: "citations", "aria-label": "Sources" },
    h("h3", {}, "Sources"),
    h("ol", {}, citations.map((c) => h("li", {}, citationItem(turnId, c, text.get(c.index) || c.text || "")))),
  );
}

// One source: its label opens the passage (fetched from the document when the stored chat lacks its text).
function citationItem(turnId, c, text) {
  const passage = h("blockquote", { class: "passage" }, text);
  const details = h(
    "details",
    { dataset: { cite: String(c.index) }, id: `${turnId}-cite-${c.index}` },
    h("summary", {}, h("span", { class: "cite-num" }, `[${c.index}]`), " ", citationLabel(c)),
    passage,
    citationMeta(c),
  );
  details.addEventListener("toggle", () => {
    if (details.open && !passage.textContent) loadPassage(c, passage);
  });
  return details;
}

function citationMeta(c) {
  return h(
    "p",
    { class: "cite-meta" },
    `Document: ${c.source || c.document_id} · collection ${c.collection}`,
    c.page != null ? ` · page ${c.page}` : "",
    c.section ? ` · section “${c.section}”` : "",
    typeof c.score === "number" ? ` · score ${c.score.toFixed(3)}` : "",
  );
}

// Stored chats may carry citations without the passage text: fetch it from the document's chunks.
async function loadPassage(citation, into) {
  into.textContent = "Loading the passage…";
  try {
    const doc = await api(`/v1/documents/${encodeURIComponent(citation.document_id)}`);
    const chunk = (doc.chunk_list || []).find((c) => c.id === citation.chunk_id);
    into.textContent = chunk ? chunk.text : "The passage is no longer stored (the document changed).";
  } catch (exc) {
    into.textContent = `The passage could not be loaded: ${exc.message}`;
  }
}

function feedbackControls(turnId, responseId) {
  const parts = feedbackParts(turnId);
  const { up, down, form, correction, status } = parts;
  const send = (rating, text) => sendFeedback(parts, { response_id: responseId, rating, correction: text || undefined });
  up.addEventListener("click", () => {
    up.setAttribute("aria-pressed", "true");
    down.setAttribute("aria-pressed", "false");
    send(1, null);
  });
  down.addEventListener("click", () => {
    down.setAttribute("aria-pressed", "true");
    up.setAttribute("aria-pressed", "false");
    form.hidden = false;
    correction.focus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(-1, correction.value.trim() || null);
  });
  return h("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" }, up, down, form, status);
}

// The thumbs, the correction form (shown after a thumbs-down) and the status line.
function feedbackParts(turnId) {
  const correction = h("textarea", {
    id: `${turnId}-correction`,
    rows: 3,
    placeholder: "Write the answer it should have given (optional)",
  });
  const form = h(
    "form",
    { class: "correction", hidden: true },
    h("label", { for: `${turnId}-correction` }, "The correct answer"),
    correction,
    h("button", { type: "submit" }, "Send feedback"),
  );
  return {
    up: h("button", { type: "button", class: "thumb", "aria-label": "Good answer", "aria-pressed": "false" }, thumb(false), "Good"),
    down: h("button", { type: "button", class: "thumb", "aria-label": "Bad answer", "aria-pressed": "false" }, thumb(true), "Bad"),
    form,
    correction,
    status: h("p", { class: "status", role: "status" }),
  };
}

// POST /v1/feedback; a thumbs-down with a correction comes back with the preference pair it made.
async function sendFeedback({ up, down, form, status }, body) {
  setStatus(status, "Sending…");
  try {
    const result = await api("/v1/feedback", { method: "POST", json: body });
    const pairs = (result.preference_pairs || []).length;
    const made = pairs ? ` ${pairs} preference pair${pairs > 1 ? "s" : ""} added for training.` : "";
    setStatus(status, `Thanks, your feedback was recorded.${made}`, "ok");
    up.disabled = down.disabled = true;
    form.hidden = true;
  } catch (exc) {
    setStatus(status, `Feedback not saved: ${exc.message}`, "error");
  }
}

// A thumb icon as inline SVG (emoji need a colour-emoji font that many machines lack). Path: Material Icons
// "thumb_up" (Apache-2.0); thumbs-down is the same shape turned over.
function thumb(down) {
  const ns = "http://www.w3.org/2000/svg";
  const icon = document.createElementNS(ns, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  icon.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute(
    "d",
    "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 " +
      "7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z",
  );
  if (down) path.setAttribute("transform", "rotate(180 12 12)");
  icon.append(path);
  return icon;
}
