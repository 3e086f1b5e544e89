// The documents page: drag-and-drop (or pick) many files, each uploaded on its own request with its own progress
// bar and its own error; the list with status, chunk count, collection and dates; search-as-you-type through
// /v1/retrieve with scores; delete after a confirmation.

import { api, session, uploadFile } from "./api.js";
import { listCollections } from "./data.js";
import { clear, confirmDialog, debounce, formatBytes, formatDate, h, poller, setStatus } from "./ui.js";

const PARALLEL_UPLOADS = 2;

export function mount(container) {
  const scoped = session.me?.collections;
  const collectionInput = scoped
    ? h("select", { id: "upload-collection" }, scoped.map((c) => h("option", { value: c }, c)))
    : h("input", {
        id: "upload-collection",
        value: "default",
        list: "known-collections",
        pattern: "[\\w.\\-]+",
        required: true,
      });
  const known = h("datalist", { id: "known-collections" });
  const fileInput = h("input", { type: "file", id: "files", multiple: true, class: "file-input" });
  const dropzone = h(
    "div",
    { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop files here, or "),
    h("label", { for: "files", class: "button secondary" }, "choose files…"),
    fileInput,
    h("p", { class: "hint" }, "PDF, DOCX, HTML, Markdown, text, CSV or JSON. Each file is uploaded and indexed on its own."),
  );
  const queue = h("ul", { class: "upload-queue", id: "upload-queue", "aria-label": "Uploads" });
  const filter = h("select", { id: "filter-collection" }, h("option", { value: "" }, "All collections"));
  const tableBody = h("tbody", { id: "documents-body" });
  const listStatus = h("p", { class: "status", role: "status" });
  const search = h("input", { type: "search", id: "search", placeholder: "Search the passages…", autocomplete: "off" });
  const results = h("ol", { class: "search-results", id: "search-results", "aria-label": "Search results" });
  const searchStatus = h("p", { class: "status", role: "status", id: "search-status" });

  container.append(
    h(
      "div",
      { class: "page documents" },
      h("h1", {}, "Documents"),
      h(
        "section",
        { class: "panel", "aria-labelledby": "upload-title" },
        h("h2", { id: "upload-title" }, "Upload"),
        h("div", { class: "field-row" }, h("label", { for: "upload-collection" }, "Collection"), collectionInput, known),
        dropzone,
        queue,
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "search-title" },
        h("h2", { id: "search-title" }, "Search"),
        h("label", { for: "search", class: "sr-only" }, "Search the passages"),
        search,
        searchStatus,
        results,
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "list-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "list-title" }, "Library"), h("label", { for: "filter-collection" }, "Show ", filter)),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { id: "documents-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Document", "Collection", "Status", "Chunks", "Size", "Added", "Updated", ""].map((t) =>
                  h("th", { scope: "col" }, t),
                ),
              ),
            ),
            tableBody,
          ),
        ),
        listStatus,
      ),
    ),
  );

  async function refreshList() {
    try {
      const params = new URLSearchParams({ limit: "1000" });
      if (filter.value) params.set("collection", filter.value);
      const docs = (await api(`/v1/documents?${params}`)).data || [];
      clear(tableBody, docs.map(documentRow));
      setStatus(listStatus, docs.length ? `${docs.length} document${docs.length > 1 ? "s" : ""}.` : "No documents yet.");
      return docs;
    } catch (exc) {
      setStatus(listStatus, `The documents could not be listed: ${exc.message}`, "error");
      return [];
    }
  }

  async function refreshCollections() {
    try {
      const names = await listCollections();
      const current = filter.value;
      clear(filter, h("option", { value: "" }, "All collections"), names.map((n) => h("option", { value: n }, n)));
      filter.value = names.includes(current) ? current : "";
      clear(known, names.map((n) => h("option", { value: n })));
    } catch {
      /* the list itself reports the error */
    }
  }

  function documentRow(doc) {
    const title = doc.title && doc.title !== doc.source ? doc.title : null;
    const remove = h(
      "button",
      { type: "button", class: "danger small", "aria-label": `Delete ${doc.source}` },
      "Delete",
    );
    remove.addEventListener("click", async () => {
      const chunks = `${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}`;
      const ok = await confirmDialog(
        "Delete this document?",
        `“${doc.source}” (${doc.collection}) and its ${chunks} will be removed from the index. This cannot be undone.`,
        "Delete",
      );
      if (!ok) return remove.focus();
      try {
        await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
        setStatus(listStatus, `Deleted ${doc.source}.`, "ok");
        await refreshList();
      } catch (exc) {
        setStatus(listStatus, `${doc.source} was not deleted: ${exc.message}`, "error");
      }
    });
    return h(
      "tr",
      { dataset: { id: doc.id, source: doc.source } },
      h("td", {}, h("span", { class: "doc-source" }, doc.source), title ? h("small", { class: "hint" }, title) : null),
      h("td", {}, doc.collection),
      h("td", {}, h("span", { class: `badge state-${doc.status}`, title: doc.error || "" }, doc.status), doc.error ? h("small", { class: "hint" }, doc.error) : null),
      h("td", { class: "num", dataset: { chunks: String(doc.chunks) } }, String(doc.chunks)),
      h("td", { class: "num" }, formatBytes(doc.size_bytes || 0)),
      h("td", {}, formatDate(doc.created_at)),
      h("td", {}, formatDate(doc.updated_at)),
      h("td", {}, remove),
    );
  }

  // ------------------------------------------------------------------ uploads

  function queueFiles(files) {
    const collection = collectionInput.value.trim();
    if (!collection || (collectionInput.checkValidity && !collectionInput.checkValidity())) {
      collectionInput.reportValidity?.();
      return;
    }
    const items = [...files].map((file) => uploadItem(file, collection));
    queue.append(...items.map((item) => item.el));
    let next = 0;
    const worker = async () => {
      while (next < items.length) await items[next++].run();
    };
    Promise.all(Array.from({ length: PARALLEL_UPLOADS }, worker)).then(async () => {
      await refreshList();
      await refreshCollections();
    });
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
    const finish = (message, kind) => {
      setStatus(status, message, kind);
      el.dataset.state = kind;
    };
    return {
      el,
      async run() {
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
      },
    };
  }

  async function waitUpload(id, onProgress) {
    for (;;) {
      const task = await api(`/v1/documents/uploads/${encodeURIComponent(id)}`);
      onProgress(task.progress || 0);
      if (task.state === "done") return task;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }

  fileInput.addEventListener("change", () => {
    queueFiles(fileInput.files);
    fileInput.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    if (event.dataTransfer?.files?.length) queueFiles(event.dataTransfer.files);
  });

  // ------------------------------------------------------------------ search

  let searchSeq = 0;
  let searchAbort = null;
  const runSearch = debounce(async () => {
    const query = search.value.trim();
    const seq = ++searchSeq;
    searchAbort?.abort();
    if (!query) {
      clear(results);
      setStatus(searchStatus, "");
      return;
    }
    searchAbort = new AbortController();
    setStatus(searchStatus, "Searching…");
    try {
      const body = { query, k: 8 };
      if (filter.value) body.collections = [filter.value];
      const hits = (await api("/v1/retrieve", { method: "POST", json: body, signal: searchAbort.signal })).data || [];
      if (seq !== searchSeq) return; // a newer query is on its way
      clear(results, hits.map(hitItem));
      setStatus(searchStatus, hits.length ? `${hits.length} passages` : "No passage matches.");
    } catch (exc) {
      if (exc.name !== "AbortError" && seq === searchSeq) setStatus(searchStatus, `Search failed: ${exc.message}`, "error");
    }
  }, 250);
  search.addEventListener("input", runSearch);

  filter.addEventListener("change", () => {
    refreshList();
    if (search.value.trim()) runSearch();
  });

  // Documents still processing (a background upload) update on their own.
  const poll = poller(async () => {
    if (tableBody.querySelector(".state-processing")) await refreshList();
  }, 3000);
  refreshCollections().then(refreshList);
  return () => {
    poll.stop();
    searchAbort?.abort();
  };
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
