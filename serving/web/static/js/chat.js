// The chat page: stored conversations in a sidebar, the model/adapter and collection pickers, answers streamed
// over SSE and rendered as Markdown, numbered citations that open the cited passage, and thumbs up/down feedback
// with an optional corrected answer (POST /v1/feedback), which becomes a preference pair for training.

import { api, session, streamChat } from "./api.js";
import { activeAdapters, listCollections, listModels, MODELS_CHANGED } from "./data.js";
import { renderMarkdown } from "./markdown.js";
import { clear, formatDate, h, poller, setStatus } from "./ui.js";

const MODEL_KEY = "assistant.model";
let turnCounter = 0;

export function mount(container) {
  const state = { history: [], chatId: null, controller: null };
  const modelSelect = h("select", { id: "model", "aria-describedby": "model-hint" });
  const collectionSelect = h("select", { id: "collection" });
  const messages = h("div", { class: "messages", id: "messages", "aria-live": "polite" });
  const prompt = h("textarea", {
    id: "prompt",
    rows: 2,
    placeholder: "Ask about your documents… (Enter sends, Shift+Enter adds a line)",
    required: true,
  });
  const sendButton = h("button", { type: "submit", id: "send" }, "Send");
  const stopButton = h("button", { type: "button", class: "secondary", hidden: true }, "Stop");
  const conversations = h("ul", { class: "conversations", id: "conversations" });
  const sidebarStatus = h("p", { class: "status", role: "status" });
  const pickerStatus = h("span", { id: "model-hint", class: "hint" });

  const newChat = () => {
    state.history = [];
    state.chatId = null;
    clear(messages, emptyState());
    markCurrent(conversations, null);
    prompt.focus();
  };

  container.append(
    h(
      "div",
      { class: "chat-layout" },
      h(
        "aside",
        { class: "chat-sidebar", "aria-labelledby": "conv-title" },
        h("button", { type: "button", class: "new-chat", onclick: newChat }, "+ New chat"),
        h("h2", { id: "conv-title" }, "Conversations"),
        conversations,
        sidebarStatus,
      ),
      h(
        "section",
        { class: "chat-main", "aria-label": "Chat" },
        h("h1", { class: "sr-only" }, "Chat"),
        h(
          "div",
          { class: "chat-toolbar" },
          h("label", { for: "model" }, "Model ", modelSelect),
          h("label", { for: "collection" }, "Collection ", collectionSelect),
          pickerStatus,
        ),
        messages,
        h(
          "form",
          {
            class: "composer",
            onsubmit: (event) => {
              event.preventDefault();
              const text = prompt.value.trim();
              if (text && !state.controller) ask(text);
            },
          },
          h("label", { for: "prompt", class: "sr-only" }, "Message"),
          prompt,
          h("div", { class: "composer-actions" }, sendButton, stopButton),
        ),
      ),
    ),
  );
  clear(messages, emptyState());
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => state.controller?.abort());

  async function ask(text) {
    prompt.value = "";
    messages.querySelector(".empty")?.remove();
    state.history.push({ role: "user", content: text });
    messages.append(userTurn(text));
    const turn = assistantTurn(modelSelect.value);
    messages.append(turn.el);
    turn.el.scrollIntoView({ block: "end" });
    const body = { model: modelSelect.value, messages: state.history.slice() };
    if (collectionSelect.value) body.collections = [collectionSelect.value];
    state.controller = new AbortController();
    sendButton.disabled = true;
    stopButton.hidden = false;
    let answer = "";
    let final = null;
    let pieces = 0;
    try {
      for await (const chunk of streamChat(body, state.controller.signal)) {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          answer += delta;
          turn.setText(answer);
          turn.el.dataset.chunks = String(++pieces); // how many streamed pieces arrived (the answer grew live)
        }
        if (chunk.citations) final = chunk;
      }
      state.history.push({ role: "assistant", content: answer });
      turn.finish(final);
      state.chatId = final?.id || state.chatId;
      refreshConversations();
    } catch (exc) {
      state.history.pop();
      turn.fail(exc.name === "AbortError" ? "Stopped." : exc.message);
    } finally {
      state.controller = null;
      sendButton.disabled = false;
      stopButton.hidden = true;
      prompt.focus();
    }
  }

  async function refreshModels() {
    try {
      const [models, active] = await Promise.all([listModels(), activeAdapters()]);
      fillModels(modelSelect, models, active);
      pickerStatus.textContent = "";
    } catch (exc) {
      pickerStatus.textContent = `Models could not be listed: ${exc.message}`;
    }
  }

  async function refreshCollections() {
    try {
      const names = await listCollections();
      const current = collectionSelect.value;
      const all = session.me?.collections ? `All my collections (${names.join(", ")})` : "All collections";
      clear(
        collectionSelect,
        h("option", { value: "" }, all),
        names.map((name) => h("option", { value: name }, name)),
      );
      collectionSelect.value = names.includes(current) ? current : "";
    } catch (exc) {
      pickerStatus.textContent = `Collections could not be listed: ${exc.message}`;
    }
  }

  async function refreshConversations() {
    try {
      const body = await api("/v1/chats?limit=50");
      const items = (body.data || []).slice().sort((a, b) => (b.created || 0) - (a.created || 0));
      clear(
        conversations,
        items.map((record) =>
          h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: "conv",
                dataset: { id: record.id },
                onclick: () => openRecord(record.id),
              },
              h("span", { class: "conv-title" }, conversationTitle(record)),
              h("small", {}, `${formatDate(record.created)} · ${record.model}`),
            ),
          ),
        ),
      );
      setStatus(sidebarStatus, items.length ? "" : "No conversations yet.");
      markCurrent(conversations, state.chatId);
    } catch (exc) {
      setStatus(sidebarStatus, `Conversations could not be loaded: ${exc.message}`, "error");
    }
  }

  async function openRecord(id) {
    try {
      const record = await api(`/v1/chats/${encodeURIComponent(id)}`);
      state.chatId = record.id;
      state.history = [...(record.messages || []).filter((m) => m.role !== "system")];
      state.history.push({ role: "assistant", content: record.answer || "" });
      clear(messages);
      const turns = state.history;
      turns.forEach((message, i) => {
        if (message.role === "user") messages.append(userTurn(message.content));
        else {
          const turn = assistantTurn(record.model);
          turn.setText(message.content);
          const last = i === turns.length - 1;
          turn.finish(last ? { id: record.id, citations: record.citations || [], sources: record.sources || [] } : null);
          messages.append(turn.el);
        }
      });
      markCurrent(conversations, record.id);
      if ([...modelSelect.options].some((o) => o.value === record.model)) modelSelect.value = record.model;
      prompt.focus();
    } catch (exc) {
      setStatus(sidebarStatus, `That conversation could not be opened: ${exc.message}`, "error");
    }
  }

  modelSelect.addEventListener("change", () => sessionStorage.setItem(MODEL_KEY, modelSelect.value));
  const onModelsChanged = () => refreshModels();
  window.addEventListener(MODELS_CHANGED, onModelsChanged);
  const modelPoll = poller(refreshModels, 10000); // another admin's activation shows up too
  refreshModels();
  refreshCollections();
  refreshConversations();
  prompt.focus();
  return () => {
    modelPoll.stop();
    window.removeEventListener(MODELS_CHANGED, onModelsChanged);
    state.controller?.abort();
  };
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
  const body = h("div", { class: "markdown", "aria-busy": "true" }, h("span", { class: "typing" }, "…"));
  const extras = h("div", { class: "turn-extras" });
  const el = h(
    "article",
    { class: "turn assistant", id, "aria-label": "Assistant" },
    h("div", { class: "turn-meta" }, `Assistant · ${model}`),
    h("div", { class: "bubble" }, body, extras),
  );
  let frame = null;
  let latest = "";
  const paint = () => {
    body.innerHTML = renderMarkdown(latest); // sanitised HTML: the answer's own HTML is text, links http(s) only
    frame = null;
  };
  body.addEventListener("click", (event) => {
    const ref = event.target.closest(".cite-ref");
    if (ref) openCitation(el, ref.dataset.cite);
  });
  return {
    el,
    setText(text) {
      latest = text;
      if (!frame) frame = requestAnimationFrame(paint);
    },
    finish(final) {
      if (frame) cancelAnimationFrame(frame);
      paint();
      body.setAttribute("aria-busy", "false");
      if (!latest.trim()) body.append(h("p", { class: "hint" }, "(empty answer)"));
      if (!final) return;
      el.dataset.responseId = final.id;
      extras.append(citationList(id, final.citations || [], final.sources || [], final.retrieval));
      extras.append(feedbackControls(id, final.id));
    },
    fail(message) {
      if (frame) cancelAnimationFrame(frame);
      if (latest) paint();
      else clear(body);
      body.setAttribute("aria-busy", "false");
      extras.append(h("p", { class: "status status-error", role: "alert" }, message));
    },
  };
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

function citationList(turnId, citations, sources, retrieval) {
  if (!citations.length) {
    const why = {
      no_documents: "no documents in the searched collections",
      no_relevant_sources: "no passage was relevant enough",
      off: "retrieval was off",
    };
    return h("p", { class: "hint" }, `No sources${why[retrieval] ? `: ${why[retrieval]}` : ""}.`);
  }
  const text = new Map(sources.map((s) => [s.index, s.text]));
  return h(
    "section",
    { class: "citations", "aria-label": "Sources" },
    h("h3", {}, "Sources"),
    h(
      "ol",
      {},
      citations.map((c) => {
        const passage = h("blockquote", { class: "passage" }, text.get(c.index) || c.text || "");
        const details = h(
          "details",
          { dataset: { cite: String(c.index) }, id: `${turnId}-cite-${c.index}` },
          h("summary", {}, h("span", { class: "cite-num" }, `[${c.index}]`), " ", citationLabel(c)),
          passage,
          h(
            "p",
            { class: "cite-meta" },
            `Document: ${c.source || c.document_id} · collection ${c.collection}`,
            c.page != null ? ` · page ${c.page}` : "",
            c.section ? ` · section “${c.section}”` : "",
            typeof c.score === "number" ? ` · score ${c.score.toFixed(3)}` : "",
          ),
        );
        details.addEventListener("toggle", () => {
          if (details.open && !passage.textContent) loadPassage(c, passage);
        });
        return h("li", {}, details);
      }),
    ),
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
  const status = h("p", { class: "status", role: "status" });
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
  const up = h("button", { type: "button", class: "thumb", "aria-label": "Good answer", "aria-pressed": "false" }, thumb(false), "Good");
  const down = h("button", { type: "button", class: "thumb", "aria-label": "Bad answer", "aria-pressed": "false" }, thumb(true), "Bad");
  const submit = async (rating, text) => {
    setStatus(status, "Sending…");
    try {
      const body = { response_id: responseId, rating };
      if (text) body.correction = text;
      const result = await api("/v1/feedback", { method: "POST", json: body });
      const pairs = (result.preference_pairs || []).length;
      const made = pairs ? ` ${pairs} preference pair${pairs > 1 ? "s" : ""} added for training.` : "";
      setStatus(status, `Thanks, your feedback was recorded.${made}`, "ok");
      up.disabled = down.disabled = true;
      form.hidden = true;
    } catch (exc) {
      setStatus(status, `Feedback not saved: ${exc.message}`, "error");
    }
  };
  up.addEventListener("click", () => {
    up.setAttribute("aria-pressed", "true");
    down.setAttribute("aria-pressed", "false");
    submit(1, null);
  });
  down.addEventListener("click", () => {
    down.setAttribute("aria-pressed", "true");
    up.setAttribute("aria-pressed", "false");
    form.hidden = false;
    correction.focus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(-1, correction.value.trim() || null);
  });
  return h("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" }, up, down, form, status);
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
