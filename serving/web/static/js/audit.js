// The audit page (admins): `GET /v1/audit` newest first, filtered by actor, action (exact or a family such as
// "keys"), outcome and a since/until window, grown page by page with "Load more", and exported as CSV or JSONL with
// the same filters. The export is fetched with the session's credentials (the Bearer key, else the session cookie) and
// saved through a Blob URL: a plain link could not carry the Authorization header.

import { api, errorFromBody, session } from "./api.js";
import { clear, formatDate, h, setStatus } from "./ui.js";

const PAGE = 50;
const EXPORT_LIMIT = 100000; // the API's most
const FAMILIES = ["documents", "feedback", "preferences", "adapters", "training", "evaluations", "sources", "keys"];

// The last export (file name and Blob), kept until the next one or until the page unmounts.
export const lastExport = { name: null, blob: null, url: null };

function forgetExport() {
  if (lastExport.url) URL.revokeObjectURL(lastExport.url);
  Object.assign(lastExport, { name: null, blob: null, url: null });
}

export function mount(container) {
  const status = h("p", { class: "status", role: "status", id: "audit-status" });
  const body = h("tbody", { id: "audit-body" });
  const more = h("button", { type: "button", class: "secondary", id: "audit-more", hidden: true }, "Load more");
  const saved = h("p", { class: "hint", id: "audit-export" });
  let limit = PAGE;
  let filters = {};
  let loading = null;

  async function refresh() {
    const controller = new AbortController();
    loading?.abort(); // a newer query wins over a slower older one
    loading = controller;
    try {
      const events = (await api(`/v1/audit?${query(filters, limit)}`, { signal: controller.signal })).data || [];
      clear(body, events.map(eventRow));
      if (!events.length) clear(body, h("tr", {}, h("td", { colspan: COLUMNS.length, class: "hint" }, "No events match.")));
      more.hidden = events.length < limit;
      setStatus(status, `${events.length} event${events.length === 1 ? "" : "s"}${more.hidden ? "" : " (newest first; more below)"}.`);
    } catch (exc) {
      if (exc.name !== "AbortError") setStatus(status, `The audit log could not be read: ${exc.message}`, "error");
    }
  }

  async function exportAs(format) {
    setStatus(status, `Exporting ${format.toUpperCase()}…`);
    try {
      const { name, blob } = await download(`/v1/audit?${query(filters, EXPORT_LIMIT, format)}`, `audit.${format}`);
      forgetExport();
      const url = URL.createObjectURL(blob);
      Object.assign(lastExport, { name, blob, url });
      const link = h("a", { href: url, download: name, id: "audit-export-link", dataset: { format } }, `Save ${name} again`);
      clear(saved, `Exported ${name} (${blob.size} bytes). `, link);
      link.click();
      setStatus(status, `Exported ${name}.`, "ok");
    } catch (exc) {
      setStatus(status, `The export failed: ${exc.message}`, "error");
    }
  }

  const form = filterForm((values) => {
    filters = values;
    limit = PAGE;
    refresh();
  }, exportAs);
  more.addEventListener("click", () => {
    limit += PAGE;
    refresh();
  });
  container.append(
    h(
      "div",
      { class: "page audit" },
      h("h1", {}, "Audit log"),
      form,
      status,
      saved,
      h(
        "section",
        { class: "panel" },
        h(
          "div",
          { class: "table-wrap" },
          h("table", {}, h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t)))), body),
        ),
        h("div", { class: "actions" }, more),
      ),
    ),
  );
  refresh();
  return () => {
    loading?.abort();
    forgetExport();
  };
}

const COLUMNS = ["When", "Actor", "Action", "Target", "Outcome", "Detail", "Request"];

function toUnix(local) {
  return local ? String(Math.floor(new Date(local).getTime() / 1000)) : null;
}

function query(filters, limit, format = null) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  params.set("limit", String(limit));
  if (format) params.set("format", format);
  return params.toString();
}

// The export's bytes, fetched with the same credentials as every other call.
async function download(path, fallbackName) {
  const headers = { "X-Requested-With": "assistant-console" };
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  let res;
  try {
    res = await fetch(path, { headers, credentials: "same-origin" });
  } catch (exc) {
    throw new Error(`the server could not be reached (${exc.message})`);
  }
  if (!res.ok) throw errorFromBody(res.status, res.statusText, await res.text());
  const named = (res.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  return { name: named ? named[1] : fallbackName, blob: await res.blob() };
}

function filterForm(onApply, onExport) {
  const actor = h("input", { id: "audit-actor", name: "actor", maxlength: 200, autocomplete: "off", placeholder: "a key's name" });
  const action = h("input", { id: "audit-action", name: "action", maxlength: 100, list: "audit-actions", autocomplete: "off", placeholder: "keys or keys.create" });
  const actions = h("datalist", { id: "audit-actions" }, FAMILIES.map((f) => h("option", { value: f })));
  const outcome = h(
    "select",
    { id: "audit-outcome", name: "outcome" },
    h("option", { value: "" }, "any"),
    ["ok", "refused", "error"].map((o) => h("option", { value: o }, o)),
  );
  const since = h("input", { id: "audit-since", name: "since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", name: "until", type: "datetime-local" });
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  const csv = h("button", { type: "button", class: "secondary", id: "audit-export-csv" }, "Export CSV");
  const jsonl = h("button", { type: "button", class: "secondary", id: "audit-export-jsonl" }, "Export JSONL");
  const form = h(
    "form",
    { class: "panel filters", id: "audit-filters", "aria-label": "Filters" },
    h(
      "div",
      { class: "form-grid" },
      field("Actor", actor),
      field("Action or family", action),
      field("Outcome", outcome),
      field("Since", since),
      field("Until", until),
    ),
    actions,
    h("div", { class: "actions" }, csv, jsonl, h("button", { type: "submit", id: "audit-apply" }, "Apply filters")),
  );
  const values = () => ({
    actor: actor.value.trim(),
    action: action.value.trim(),
    outcome: outcome.value,
    since: toUnix(since.value),
    until: toUnix(until.value),
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onApply(values());
  });
  csv.addEventListener("click", () => {
    onApply(values());
    onExport("csv");
  });
  jsonl.addEventListener("click", () => {
    onApply(values());
    onExport("jsonl");
  });
  return form;
}

function eventRow(event) {
  const detail = event.detail && Object.keys(event.detail).length ? JSON.stringify(event.detail) : "";
  return h(
    "tr",
    { dataset: { id: event.id, action: event.action, actor: event.actor, outcome: event.outcome } },
    h("td", {}, formatDate(event.at)),
    h("td", {}, event.actor, event.role ? h("small", { class: "hint" }, event.role) : null),
    h("td", {}, h("code", {}, event.action)),
    h("td", { class: "wrap" }, event.target || "—"),
    h("td", {}, h("span", { class: `badge outcome-${event.outcome}` }, event.outcome), h("small", { class: "hint" }, String(event.status))),
    h("td", { class: "wrap" }, detail ? h("code", {}, detail) : "—"),
    h("td", {}, h("small", { class: "hint" }, event.request_id || "—")),
  );
}
