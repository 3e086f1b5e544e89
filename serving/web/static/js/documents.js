// The documents page: drag-and-drop (or pick) many files, each uploaded on its own request with its own progress
// bar and its own error; the list with status, chunk count, collection and dates, each row opening the document's
// parse report (pages, the method of each page — text layer or OCR — with its confidence, tables found, warnings,
// from GET /v1/documents/{id}); search-as-you-type through /v1/retrieve with scores; delete after a confirmation.
//
// `mount` builds the page object (its elements and state) and wires it; every piece below takes that object:
// render pieces build elements from data (text only, never HTML), handlers react to the user, API calls fetch.

import { api, session, uploadFile } from "./api.js";
import { listCollections } from "./data.js";
import { clear, confirmDialog, debounce, formatBytes, formatDate, formatNumber, h, poller, setStatus } from "./ui.js";

const PARALLEL_UPLOADS = 2;
const COLUMNS = ["Document", "Collection", "Status", "Chunks", "Size", "Added", "Updated", ""];
const METHOD_LABELS = { text: "text layer", ocr: "OCR", failed: "failed" };

export function mount(container) {
  const page = buildPage();
  container.append(page.root);
  bindUploads(page);
  bindSearch(page);
  page.filter.addEventListener("change", () => onFilterChange(page));
  // Documents still processing (a background upload) update on their own.
  const poll = poller(() => refreshProcessing(page), 3000);
  refreshCollections(page).then(() => refreshList(page));
  return () => {
    poll.stop();
    page.searchAbort?.abort();
  };
}

// ------------------------------------------------------------------ the page

function buildPage() {
  const page = {
    collectionInput: collectionField(),
    known: h("datalist", { id: "known-collections" }),
    fileInput: h("input", { type: "file", id: "files", multiple: true, class: "file-input" }),
    queue: h("ul", { class: "upload-queue", id: "upload-queue", "aria-label": "Uploads" }),
    filter: h("select", { id: "filter-collection" }, h("option", { value: "" }, "All collections")),
    tableBody: h("tbody", { id: "documents-body" }),
    listStatus: h("p", { class: "status", role: "status" }),
    search: h("input", { type: "search", id: "search", placeholder: "Search the passages…", autocomplete: "off" }),
    results: h("ol", { class: "search-results", id: "search-results", "aria-label": "Search results" }),
    searchStatus: h("p", { class: "status", role: "status", id: "search-status" }),
    searchSeq: 0,
    searchAbort: null,
    expanded: new Set(), // ids of the rows whose parse report is open (kept open across list refreshes)
    reports: new Map(), // id -> {updated, report}: a report is fetched once per version of the document
  };
  page.dropzone = dropzone(page.fileInput);
  page.root = h("div", { class: "page documents" }, h("h1", {}, "Documents"), uploadPanel(page), searchPanel(page), libraryPanel(page));
  return page;
}

// A member scoped to collections picks one of them; others type a name (with the known ones suggested).
function collectionField() {
  const scoped = session.me?.collections;
  if (scoped) return h("select", { id: "upload-collection" }, scoped.map((c) => h("option", { value: c }, c)));
  return h("input", { id: "upload-collection", value: "default", list: "known-collections", pattern: "[\\w.\\-]+", required: true });
}

function dropzone(fileInput) {
  return h(
    "div",
    { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop files here, or "),
    h("label", { for: "files", class: "button secondary" }, "choose files…"),
    fileInput,
    h("p", { class: "hint" }, "PDF (scanned pages are read by OCR), DOCX, PPTX, XLSX, e-mail (.eml), HTML, Markdown, text, CSV or JSON. Each file is uploaded and indexed on its own."),
  );
}

function uploadPanel(page) {
  return h(
    "section",
    { class: "panel", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload"),
    h("div", { class: "field-row" }, h("label", { for: "upload-collection" }, "Collection"), page.collectionInput, page.known),
    page.dropzone,
    page.queue,
  );
}

function searchPanel(page) {
  return h(
    "section",
    { class: "panel", "aria-labelledby": "search-title" },
    h("h2", { id: "search-title" }, "Search"),
    h("label", { for: "search", class: "sr-only" }, "Search the passages"),
    page.search,
    page.searchStatus,
    page.results,
  );
}

function libraryPanel(page) {
  const head = h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t))));
  return h(
    "section",
    { class: "panel", "aria-labelledby": "list-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "list-title" }, "Library"), h("label", { for: "filter-collection" }, "Show ", page.filter)),
    h("div", { class: "table-wrap" }, h("table", { id: "documents-table" }, head, page.tableBody)),
    page.listStatus,
  );
}

// ------------------------------------------------------------------ the list

async function refreshList(page) {
  try {
    const docs = await fetchDocuments(page.filter.value);
    clear(page.tableBody, docs.map((doc) => documentRows(page, doc)));
    setStatus(page.listStatus, docs.length ? `${docs.length} document${docs.length > 1 ? "s" : ""}.` : "No documents yet.");
    return docs;
  } catch (exc) {
    setStatus(page.listStatus, `The documents could not be listed: ${exc.message}`, "error");
    return [];
  }
}

async function fetchDocuments(collection) {
  const params = new URLSearchParams({ limit: "1000" });
  if (collection) params.set("collection", collection);
  return (await api(`/v1/documents?${params}`)).data || [];
}

async function refreshProcessing(page) {
  if (page.tableBody.querySelector(".state-processing")) await refreshList(page);
}

async function refreshCollections(page) {
  try {
    const names = await listCollections();
    const current = page.filter.value;
    clear(page.filter, h("option", { value: "" }, "All collections"), names.map((n) => h("option", { value: n }, n)));
    page.filter.value = names.includes(current) ? current : "";
    clear(page.known, names.map((n) => h("option", { value: n })));
  } catch {
    /* the list itself reports the error */
  }
}

function onFilterChange(page) {
  refreshList(page);
  if (page.search.value.trim()) page.runSearch();
}

// The document's row, then its parse report's row when it is open.
function documentRows(page, doc) {
  const row = documentRow(page, doc);
  if (!page.expanded.has(doc.id)) return row;
  const report = reportRow(doc);
  showReport(page, doc, report);
  return [row, report];
}

function documentRow(page, doc) {
  const title = doc.title && doc.title !== doc.source ? doc.title : null;
  const remove = h("button", { type: "button", class: "danger small", "aria-label": `Delete ${doc.source}` }, "Delete");
  remove.addEventListener("click", () => onDelete(page, doc, remove));
  return h(
    "tr",
    { dataset: { id: doc.id, source: doc.source } },
    h("td", {}, h("span", { class: "doc-source" }, doc.source), title ? h("small", { class: "hint" }, title) : null, reportToggle(page, doc)),
    h("td", {}, doc.collection),
    h("td", {}, h("span", { class: `badge state-${doc.status}`, title: doc.error || "" }, doc.status), doc.error ? h("small", { class: "hint" }, doc.error) : null),
    h("td", { class: "num", dataset: { chunks: String(doc.chunks) } }, String(doc.chunks)),
    h("td", { class: "num" }, formatBytes(doc.size_bytes || 0)),
    h("td", {}, formatDate(doc.created_at)),
    h("td", {}, formatDate(doc.updated_at)),
    h("td", {}, remove),
  );
}

function reportToggle(page, doc) {
  const open = page.expanded.has(doc.id);
  return h(
    "button",
    {
      type: "button",
      class: "link-button report-toggle",
      "aria-expanded": String(open),
      "aria-controls": reportId(doc),
      "aria-label": `Parse report of ${doc.source}`,
      onclick: (event) => onToggleReport(page, doc, event.currentTarget),
    },
    open ? "Hide parse report" : "Parse report",
  );
}

async function onDelete(page, doc, button) {
  const chunks = `${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}`;
  const ok = await confirmDialog(
    "Delete this document?",
    `“${doc.source}” (${doc.collection}) and its ${chunks} will be removed from the index. This cannot be undone.`,
    "Delete",
  );
  if (!ok) return button.focus();
  try {
    await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    page.expanded.delete(doc.id);
    setStatus(page.listStatus, `Deleted ${doc.source}.`, "ok");
    await refreshList(page);
  } catch (exc) {
    setStatus(page.listStatus, `${doc.source} was not deleted: ${exc.message}`, "error");
  }
}

// ------------------------------------------------------------------ the parse report

function reportId(doc) {
  return `report-${doc.id}`;
}

function onToggleReport(page, doc, button) {
  const row = button.closest("tr");
  const open = page.expanded.has(doc.id);
  if (open) {
    page.expanded.delete(doc.id);
    const report = row.nextElementSibling;
    if (report?.matches(".doc-report")) report.remove();
  } else {
    page.expanded.add(doc.id);
    const report = reportRow(doc);
    row.after(report);
    showReport(page, doc, report);
  }
  button.setAttribute("aria-expanded", String(!open));
  button.textContent = open ? "Parse report" : "Hide parse report";
}

function reportRow(doc) {
  const holder = h("div", { class: "parse-report", "aria-live": "polite" }, h("p", { class: "status", role: "status" }, "Loading the parse report…"));
  return h("tr", { class: "doc-report", id: reportId(doc), dataset: { reportFor: doc.id } }, h("td", { colspan: COLUMNS.length }, holder));
}

// Fills the report's row: from the cache when this version of the document was fetched before.
async function showReport(page, doc, row) {
  const holder = row.querySelector(".parse-report");
  try {
    const report = await fetchReport(page, doc);
    clear(holder, parseReportView(doc, report));
  } catch (exc) {
    clear(holder, h("p", { class: "status status-error", role: "alert" }, `The parse report could not be loaded: ${exc.message}`));
  }
}

async function fetchReport(page, doc) {
  const cached = page.reports.get(doc.id);
  if (cached && cached.updated === doc.updated_at) return cached.report;
  const body = await api(`/v1/documents/${encodeURIComponent(doc.id)}`);
  const report = body.parse_report ?? null;
  page.reports.set(doc.id, { updated: doc.updated_at, report });
  return report;
}

function parseReportView(doc, report) {
  const heading = h("h3", {}, `How “${doc.source}” was read`);
  if (!report) return [heading, h("p", { class: "hint" }, "No parse report: this document was stored before parse reports were recorded (upload it again to get one).")];
  return [heading, reportSummary(report), pageTable(report.page_details || []), warningList(report.warnings || [])];
}

function reportSummary(report) {
  const methods = Object.entries(report.methods || {}).map(([m, n]) => `${METHOD_LABELS[m] || m}: ${n}`);
  const entries = [
    ["Pages", String(report.pages ?? 0)],
    ["Read by", methods.length ? methods.join(" · ") : "—"],
    ["Tables found", String(report.tables ?? 0)],
    report.ocr_engine ? ["OCR engine", `${report.ocr_engine} (${formatNumber(report.ocr_seconds ?? 0, 2)} s)`] : null,
  ].filter(Boolean);
  return h("dl", { class: "metrics report-summary" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, v)]));
}

function pageTable(pages) {
  if (!pages.length) return h("p", { class: "hint" }, "This format has no pages.");
  const head = h("thead", {}, h("tr", {}, ["Page", "Method", "Confidence", "Characters"].map((t) => h("th", { scope: "col" }, t))));
  return h("div", { class: "table-wrap" }, h("table", { class: "report-pages" }, head, h("tbody", {}, pages.map(pageRow))));
}

function pageRow(page) {
  const confidence = typeof page.confidence === "number" ? `${(page.confidence * 100).toFixed(1)}%` : "—";
  return h(
    "tr",
    { dataset: { page: String(page.page), method: page.method } },
    h("td", { class: "num" }, String(page.page)),
    h("td", {}, h("span", { class: `badge method-${page.method}` }, METHOD_LABELS[page.method] || page.method)),
    h("td", { class: "num" }, confidence),
    h("td", { class: "num" }, String(page.chars ?? 0)),
  );
}

function warningList(warnings) {
  if (!warnings.length) return h("p", { class: "hint report-warnings" }, "No warnings.");
  return [h("h4", {}, "Warnings"), h("ul", { class: "report-warnings" }, warnings.map((w) => h("li", {}, w)))];
}

// ------------------------------------------------------------------ uploads

function bindUploads(page) {
  const { dropzone: zone, fileInput } = page;
  fileInput.addEventListener("change", () => {
    queueFiles(page, fileInput.files);
    fileInput.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer?.files?.length) queueFiles(page, event.dataTransfer.files);
  });
}

function queueFiles(page, files) {
  const input = page.collectionInput;
  const collection = input.value.trim();
  if (!collection || (input.checkValidity && !input.checkValidity())) {
    input.reportValidity?.();
    return;
  }
  const items = [...files].map((file) => uploadItem(file, collection));
  page.queue.append(...items.map((item) => item.el));
  runQueue(items).then(async () => {
    await refreshList(page);
    await refreshCollections(page);
  });
}

// Runs the uploads PARALLEL_UPLOADS at a time.
function runQueue(items) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await items[next++].run();
  };
  return Promise.all(Array.from({ length: PARALLEL_UPLOADS }, worker));
}

function uploadItem(file, collection) {
  const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
  const status = h("span", { class: "status" }, "waiting");
  const el = h(
    "li",
    { class: "upload", dataset: { name: file.name } },
    h("span", { class: "upload-name" }, file.name, h("small", { class: "hint" }, ` ${formatBytes(file.size)}`)),
    bar,
    status,
  );
  return { el, run: () => runUpload(file, collection, { el, bar, status }) };
}

async function runUpload(file, collection, { el, bar, status }) {
  const finish = (message, kind) => {
    setStatus(status, message, kind);
    el.dataset.state = kind;
  };
  setStatus(status, "uploading…");
  try {
    const { status: code, body } = await uploadFile(file, collection, (fraction) => {
      bar.value = Math.round(fraction * 90); // the last 10% is the server indexing the file
      if (fraction >= 1) setStatus(status, "indexing…");
    });
    const result = code === 202 ? await waitUpload(body.id, (p) => (bar.value = 90 + p * 10)) : body;
    bar.value = 100;
    const first = (result.results || result.data || [])[0] || {};
    if (first.status === "failed") finish(`failed: ${first.error}`, "error");
    else finish(`${first.status || "done"}${first.chunks != null ? ` · ${first.chunks} chunks` : ""}`, "ok");
  } catch (exc) {
    bar.value = 0;
    finish(`failed: ${exc.message}`, "error");
  }
}

async function waitUpload(id, onProgress) {
  for (;;) {
    const task = await api(`/v1/documents/uploads/${encodeURIComponent(id)}`);
    onProgress(task.progress || 0);
    if (task.state === "done") return task;
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
}

// ------------------------------------------------------------------ search

function bindSearch(page) {
  page.runSearch = debounce(() => runSearch(page), 250);
  page.search.addEventListener("input", page.runSearch);
}

async function runSearch(page) {
  const query = page.search.value.trim();
  const seq = ++page.searchSeq;
  page.searchAbort?.abort();
  if (!query) {
    clear(page.results);
    setStatus(page.searchStatus, "");
    return;
  }
  page.searchAbort = new AbortController();
  setStatus(page.searchStatus, "Searching…");
  try {
    const hits = await retrieve(query, page.filter.value, page.searchAbort.signal);
    if (seq !== page.searchSeq) return; // a newer query is on its way
    clear(page.results, hits.map(hitItem));
    setStatus(page.searchStatus, hits.length ? `${hits.length} passages` : "No passage matches.");
  } catch (exc) {
    if (exc.name !== "AbortError" && seq === page.searchSeq) setStatus(page.searchStatus, `Search failed: ${exc.message}`, "error");
  }
}

async function retrieve(query, collection, signal) {
  const body = { query, k: 8 };
  if (collection) body.collections = [collection];
  return (await api("/v1/retrieve", { method: "POST", json: body, signal })).data || [];
}

function hitItem(hit) {
  const where = [hit.page != null ? `p. ${hit.page}` : null, hit.section ? `§ ${hit.section}` : null].filter(Boolean);
  const text = hit.text.length > 400 ? `${hit.text.slice(0, 397)}…` : hit.text;
  return h(
    "li",
    { class: "hit" },
    h(
      "div",
      { class: "hit-head" },
      h("span", { class: "score", title: "retrieval score" }, (hit.score ?? 0).toFixed(3)),
      " ",
      h("strong", {}, hit.title || hit.source),
      h("small", { class: "hint" }, ` ${hit.collection}${where.length ? ` · ${where.join(" · ")}` : ""}`),
    ),
    h("p", { class: "hit-text" }, text),
  );
}
