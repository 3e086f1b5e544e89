// The sources page (admins): folders on the server kept in sync with a collection (/v1/sources). A form adds one
// (path, collection, name, what a file deleted from the folder does, an optional schedule) and shows the dry-run
// diff of its first sync; the list shows each source's status, the last sync's counts and its last error, with a
// dry run (what a sync would change), a sync now (run in the background by the server; the page follows it to its
// outcome) and removal (its documents stay). Every text from the server is set
// as text. Members never mount it (app.js), and the API refuses them anyway: its 403 message is shown as it is.
//
// `mount` builds the page object and wires it; the pieces below take it: render pieces, handlers, API calls.

import { api } from "./api.js";
import { clear, confirmDialog, formatDate, h, poller, setStatus } from "./ui.js";

const COLUMNS = ["Source", "Collection", "Files gone from the folder", "Schedule", "Status", "Last sync", "Last error", ""];
const COUNTS = ["added", "changed", "deleted", "kept", "unchanged", "failed"];
const FILE_LISTS = { added: "New files", changed: "Changed files", deleted: "Deleted from the collection", kept: "Gone from the folder, kept" };
const SHOWN_FILES = 50; // per list in the diff; the rest is counted
const FOLLOW_MS = 1000; // how often a running sync started here is read

export function mount(container) {
  const page = buildPage();
  container.append(page.root);
  page.form.addEventListener("submit", (event) => onCreate(page, event));
  const poll = poller(() => refreshWhileSyncing(page), 3000); // a scheduled or file-event sync shows up on its own
  refreshSources(page);
  return () => {
    poll.stop();
    page.closed = true; // a sync being followed stops being read
  };
}

// ------------------------------------------------------------------ the page

function buildPage() {
  const page = {
    status: h("p", { class: "status", role: "status", id: "sources-status" }),
    form: sourceForm(),
    diff: h("section", { class: "panel source-diff", id: "source-diff", hidden: true, "aria-live": "polite" }),
    body: h("tbody", { id: "sources-body" }),
    closed: false, // set when the page unmounts
  };
  const head = h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t))));
  page.root = h(
    "div",
    { class: "page sources" },
    h("h1", {}, "Sources"),
    h("p", { class: "hint" }, "Folders on the server kept in sync with a collection: new and changed files are ingested, deleted ones removed or kept. Documents uploaded by hand into the same collection are never touched."),
    h("section", { class: "panel", "aria-labelledby": "source-form-title" }, h("h2", { id: "source-form-title" }, "Add a folder"), page.form),
    page.status,
    page.diff,
    h("section", { class: "panel", "aria-labelledby": "sources-title" }, h("h2", { id: "sources-title" }, "Sources"), h("div", { class: "table-wrap" }, h("table", { id: "sources-table" }, head, page.body))),
  );
  return page;
}

function sourceForm() {
  const path = h("input", { id: "source-path", name: "path", required: true, placeholder: "/srv/shared/handbook", autocomplete: "off" });
  const collection = withDefault(h("input", { id: "source-collection", name: "collection", required: true, pattern: "[\\w.\\-]+" }), "default");
  const name = h("input", { id: "source-name", name: "name", pattern: "[\\w.\\-]+", placeholder: "the folder's name" });
  const policy = h(
    "select",
    { id: "source-delete", name: "delete" },
    h("option", { value: "mirror" }, "delete it (mirror)"),
    h("option", { value: "keep" }, "keep it (keep)"),
  );
  const interval = h("input", { id: "source-interval", name: "interval_s", type: "number", min: 10, step: 1, placeholder: "off" });
  return h(
    "form",
    { id: "source-form" },
    h(
      "div",
      { class: "form-grid" },
      formField(path, "Folder on the server", "An absolute path the server can read."),
      formField(collection, "Collection"),
      formField(name, "Name"),
      formField(policy, "When a file leaves the folder"),
      formField(interval, "Sync every (seconds)", "Blank: no schedule (on demand, and on folder changes once synced)."),
    ),
    h("button", { type: "submit" }, "Add and preview"),
  );
}

function formField(input, label, hint = null) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint ? h("small", { class: "hint" }, hint) : null);
}

// An input whose value comes back after the form's reset (h sets the live value, reset restores the default one).
function withDefault(input, value) {
  input.defaultValue = value;
  return input;
}

// The spec POST /v1/sources takes, from the form (blank optional fields left out: the server's defaults apply).
function formSpec(form) {
  const values = Object.fromEntries(new FormData(form).entries());
  const spec = { path: values.path.trim(), collection: values.collection.trim(), delete: values.delete };
  if (values.name.trim()) spec.name = values.name.trim();
  if (values.interval_s !== "") spec.interval_s = Number(values.interval_s);
  return spec;
}

// ------------------------------------------------------------------ the list

async function refreshSources(page) {
  try {
    const sources = (await api("/v1/sources")).data || [];
    clear(page.body, sources.length ? sources.map((source) => sourceRow(page, source)) : emptyRow());
    return sources;
  } catch (exc) {
    setStatus(page.status, `Sources could not be listed: ${exc.message}`, "error");
    return [];
  }
}

async function refreshWhileSyncing(page) {
  if (page.body.querySelector("tr[data-syncing=true]")) await refreshSources(page);
}

function emptyRow() {
  return h("tr", {}, h("td", { colspan: COLUMNS.length, class: "hint" }, "No sources yet: add a folder above."));
}

function sourceRow(page, source) {
  return h(
    "tr",
    { dataset: { id: source.id, name: source.name, status: source.status, syncing: String(!!source.syncing) } },
    h("td", { class: "wrap" }, h("strong", {}, source.name), h("small", { class: "hint source-path" }, source.path)),
    h("td", {}, source.collection),
    h("td", {}, source.delete === "keep" ? "kept (keep)" : "deleted (mirror)"),
    h("td", {}, source.interval_s ? `every ${source.interval_s} s` : "none"),
    h("td", {}, h("span", { class: `badge source-${source.syncing ? "syncing" : source.status}` }, source.syncing ? "syncing" : source.status)),
    h("td", {}, formatDate(source.last_sync_at), countList(source.counts || {})),
    h("td", { class: "wrap last-error" }, errorCell(source)),
    h("td", { class: "row-actions" }, rowActions(page, source)),
  );
}

function countList(counts) {
  const entries = COUNTS.filter((name) => name in counts);
  if (!entries.length) return null;
  return h("dl", { class: "scores source-counts" }, entries.map((name) => [h("dt", {}, name), h("dd", { dataset: { count: name } }, String(counts[name]))]));
}

function errorCell(source) {
  if (!source.last_error) return h("span", { class: "hint" }, "—");
  const failed = (source.errors || []).map((e) => h("li", {}, `${e.path}: ${e.error}`));
  return [h("span", { class: "status-error" }, source.last_error), failed.length > 1 ? h("ul", { class: "plain hint" }, failed) : null];
}

function rowActions(page, source) {
  const label = (verb) => `${verb} ${source.name}`;
  return [
    h("button", { type: "button", class: "secondary small", "aria-label": label("Preview"), onclick: () => onPreview(page, source) }, "Dry run"),
    h("button", { type: "button", class: "small", "aria-label": label("Sync"), disabled: !!source.syncing, onclick: (e) => onSync(page, source, e.currentTarget) }, "Sync now"),
    h("button", { type: "button", class: "danger small", "aria-label": label("Remove"), onclick: () => onRemove(page, source) }, "Remove"),
  ];
}

// ------------------------------------------------------------------ handlers

async function onCreate(page, event) {
  event.preventDefault();
  const spec = formSpec(page.form);
  setStatus(page.status, `Adding ${spec.path}…`);
  try {
    const created = await api("/v1/sources", { method: "POST", json: spec });
    page.form.reset();
    setStatus(page.status, `Source ${created.name} added. Nothing is ingested until its first sync: check the dry run below, then press “Sync now”.`, "ok");
    showDiff(page, created, created.preview);
  } catch (exc) {
    setStatus(page.status, `The source could not be added: ${exc.message}`, "error");
  }
  await refreshSources(page);
}

async function onPreview(page, source) {
  setStatus(page.status, `Comparing ${source.path} with ${source.collection}…`);
  try {
    const report = await syncSource(source, true);
    setStatus(page.status, `Dry run of ${source.name}: nothing was changed.`, "ok");
    showDiff(page, report.source, report);
  } catch (exc) {
    setStatus(page.status, `The dry run of ${source.name} failed: ${exc.message}`, "error");
  }
}

// A sync runs in the background (202): the row shows it syncing and the page follows the source until it ends; its
// outcome (counts, per-file errors, or the error that stopped it) is then shown. A server that answers with the
// sync's report at once (200) is shown that report.
async function onSync(page, source, button) {
  button.disabled = true;
  setStatus(page.status, `Syncing ${source.name}…`);
  try {
    const answer = await syncSource(source, false);
    const report = answer.status === "syncing" ? await followSync(page, source) : answer;
    if (!report) return; // the page was left meanwhile
    setStatus(page.status, ...syncMessage(source.name, report));
    showDiff(page, report.source, report);
  } catch (exc) {
    setStatus(page.status, `The sync of ${source.name} failed: ${exc.message}`, "error");
  }
  await refreshSources(page);
}

// Reads the source until it is no longer syncing; its outcome as a report (no file lists: those come with a wait).
async function followSync(page, source) {
  await refreshSources(page);
  while (!page.closed) {
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
    const current = await api(`/v1/sources/${encodeURIComponent(source.id)}`);
    if (!current.syncing) return syncOutcome(current);
  }
  return null;
}

function syncOutcome(source) {
  const failed = source.errors || [];
  return { source, dry_run: false, counts: source.counts || {}, failed, status: source.status, last_error: source.last_error };
}

function syncMessage(name, report) {
  if (report.status === "failed") return [`The sync of ${name} failed: ${report.last_error}`, "error"];
  const failed = report.counts?.failed || 0;
  if (!failed) return [`${name} synced.`, "ok"];
  const first = report.failed?.[0]?.error || report.last_error || "see the list below";
  return [`${name} synced, ${failed} file${failed > 1 ? "s" : ""} failed: ${first}`, "error"];
}

async function onRemove(page, source) {
  const ok = await confirmDialog(
    "Remove this source?",
    `${source.name} stops syncing ${source.path}. The documents it synced stay in ${source.collection} as ordinary documents.`,
    "Remove",
  );
  if (!ok) return;
  try {
    await api(`/v1/sources/${encodeURIComponent(source.id)}`, { method: "DELETE" });
    setStatus(page.status, `Source ${source.name} removed.`, "ok");
    page.diff.hidden = true;
  } catch (exc) {
    setStatus(page.status, `${source.name} was not removed: ${exc.message}`, "error");
  }
  await refreshSources(page);
}

// POST /v1/sources/{id}/sync: a dry run answers its diff (and the source); a sync answers 202 {status: "syncing"}
// and runs in the background (an older server answered its report at once).
function syncSource(source, dryRun) {
  return api(`/v1/sources/${encodeURIComponent(source.id)}/sync`, { method: "POST", json: { dry_run: dryRun } });
}

// ------------------------------------------------------------------ the diff

function showDiff(page, source, report) {
  page.diff.hidden = false;
  page.diff.dataset.source = source.id;
  page.diff.dataset.dryRun = String(report.dry_run);
  clear(page.diff, diffView(source, report));
}

function diffView(source, report) {
  const title = report.dry_run ? `Dry run of ${source.name}: what a sync would do` : `Sync of ${source.name}`;
  const lists = Object.entries(FILE_LISTS).map(([key, label]) => fileList(key, label, report[key] || []));
  return [
    h("h2", {}, title),
    h("p", { class: "hint" }, `${source.path} → ${source.collection}${report.seconds != null ? ` · ${report.seconds} s` : ""}`),
    h("dl", { class: "counts" }, COUNTS.map((name) => h("div", { class: "count" }, h("dt", {}, name), h("dd", { dataset: { count: name } }, String(report.counts?.[name] ?? 0))))),
    lists,
    failedList(report.failed || []),
  ];
}

function fileList(key, label, paths) {
  if (!paths.length) return null;
  const more = paths.length > SHOWN_FILES ? h("li", { class: "hint" }, `… and ${paths.length - SHOWN_FILES} more`) : null;
  return [h("h3", {}, `${label} (${paths.length})`), h("ul", { class: `diff-files diff-${key}` }, paths.slice(0, SHOWN_FILES).map((p) => h("li", {}, p)), more)];
}

function failedList(failed) {
  if (!failed.length) return null;
  const items = failed.slice(0, SHOWN_FILES).map((f) => h("li", {}, h("code", {}, f.path), `: ${f.error}`));
  return [h("h3", {}, `Failed (${failed.length})`), h("ul", { class: "diff-files diff-failed", role: "alert" }, items)];
}
