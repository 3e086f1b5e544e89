// The training page (admins): preference pairs and feedback counts by provenance; a form to start a job (method,
// data, the main hyperparameters with their defaults shown); the jobs with live progress, curves of the logged
// losses/perplexity/rewards drawn from the job's metrics, the log tail, and cancel.

import { api } from "./api.js";
import { lineChart, seriesFrom } from "./chart.js";
import { clear, confirmDialog, formatDate, formatNumber, h, poller, setStatus } from "./ui.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const OPTION_LABELS = {
  learning_rate: "Learning rate",
  max_steps: "Max steps (-1: use epochs)",
  num_train_epochs: "Epochs",
  per_device_train_batch_size: "Batch size",
  lora_r: "LoRA rank",
  lora_alpha: "LoRA alpha",
  beta: "DPO beta",
  logging_steps: "Log every N steps",
  eval_split: "Validation share",
};

export function mount(container) {
  const counts = h("dl", { class: "counts", id: "pair-counts" });
  const pairsBody = h("tbody", { id: "pairs-body" });
  const pairsStatus = h("p", { class: "status", role: "status" });
  const jobsBody = h("tbody", { id: "jobs-body" });
  const jobsStatus = h("p", { class: "status", role: "status" });
  const detail = h("section", { class: "panel job-detail", id: "job-detail", "aria-live": "polite", hidden: true });
  const form = jobForm();
  let selected = null;

  container.append(
    h(
      "div",
      { class: "page training" },
      h("h1", {}, "Training"),
      h(
        "section",
        { class: "panel", "aria-labelledby": "pairs-title" },
        h("h2", { id: "pairs-title" }, "Preference pairs"),
        counts,
        h("details", {}, h("summary", {}, "Newest pairs"), h("div", { class: "table-wrap" },
          h("table", {}, h("thead", {}, h("tr", {}, ["Added", "Provenance", "Prompt (end)", "Chosen", "Rejected"].map((t) => h("th", { scope: "col" }, t)))), pairsBody))),
        pairsStatus,
      ),
      form.el,
      h(
        "section",
        { class: "panel", "aria-labelledby": "jobs-title" },
        h("h2", { id: "jobs-title" }, "Jobs"),
        h("div", { class: "table-wrap" }, h("table", { id: "jobs-table" },
          h("thead", {}, h("tr", {}, ["Job", "Method", "Adapter", "State", "Progress", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
          jobsBody)),
        jobsStatus,
      ),
      detail,
    ),
  );

  async function refreshPairs() {
    try {
      const first = await api("/v1/preferences?limit=1");
      const total = first.counts?.total || 0;
      const offset = Math.max(0, total - 10);
      const newest = await api(`/v1/preferences?limit=10&offset=${offset}`);
      const c = newest.counts || {};
      clear(
        counts,
        [["Total", c.total || 0, "total"], ["From feedback", c.feedback || 0, "feedback"], ["Imported", c.imported || 0, "imported"]].map(
          ([label, value, key]) => h("div", { class: "count" }, h("dt", {}, label), h("dd", { dataset: { count: key } }, String(value))),
        ),
      );
      clear(pairsBody, (newest.data || []).slice().reverse().map(pairRow));
      setStatus(pairsStatus, "");
    } catch (exc) {
      setStatus(pairsStatus, `Preference pairs could not be read: ${exc.message}`, "error");
    }
  }

  async function refreshJobs() {
    try {
      const jobs = (await api("/v1/training/jobs?limit=20")).data || [];
      clear(jobsBody, jobs.map((job) => jobRow(job, () => select(job.id))));
      setStatus(jobsStatus, jobs.length ? "" : "No jobs yet.");
      return jobs;
    } catch (exc) {
      setStatus(jobsStatus, `Jobs could not be listed: ${exc.message}`, "error");
      return [];
    }
  }

  async function refreshDetail() {
    if (!selected) return;
    try {
      const job = await api(`/v1/training/jobs/${encodeURIComponent(selected)}`);
      renderDetail(detail, job, cancel);
      if (FINAL.has(job.state)) refreshPairs();
    } catch (exc) {
      detail.hidden = false;
      clear(detail, h("p", { class: "status status-error", role: "alert" }, `The job could not be read: ${exc.message}`));
    }
  }

  async function cancel(job) {
    const ok = await confirmDialog("Cancel this job?", `Job ${job.id} stops at its next step; nothing is registered.`, "Cancel job");
    if (!ok) return;
    try {
      await api(`/v1/training/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
    } catch (exc) {
      setStatus(jobsStatus, `The job was not cancelled: ${exc.message}`, "error");
    }
    await Promise.all([refreshJobs(), refreshDetail()]);
  }

  function select(id) {
    selected = id;
    refreshDetail().then(() => detail.querySelector("h2")?.focus());
  }

  form.onCreated = (job) => {
    refreshJobs();
    select(job.id);
  };

  // Live progress: the list, and the selected job until it reaches a final state.
  const poll = poller(async () => {
    await refreshJobs();
    if (selected && !FINAL.has(detail.dataset.state)) await refreshDetail();
  }, 1500);
  api("/web/training-defaults").then(form.setDefaults, (exc) => form.setDefaults({}, exc));
  refreshPairs();
  refreshJobs().then((jobs) => {
    const running = jobs.find((job) => !FINAL.has(job.state));
    if (running) select(running.id);
  });
  return () => poll.stop();
}

function clip(text, n, fromEnd = false) {
  text = String(text || "").replace(/\s+/g, " ").trim();
  if (text.length <= n) return text;
  return fromEnd ? `…${text.slice(-n)}` : `${text.slice(0, n)}…`;
}

function pairRow(pair) {
  return h(
    "tr",
    {},
    h("td", {}, formatDate(pair.created_at)),
    h("td", {}, h("span", { class: `badge prov-${pair.provenance}` }, pair.provenance)),
    h("td", {}, clip(pair.prompt, 80, true)),
    h("td", {}, clip(pair.chosen, 80)),
    h("td", {}, clip(pair.rejected, 80)),
  );
}

function jobRow(job, onSelect) {
  const adapter = job.metrics?.adapter || job.params?.name || "";
  return h(
    "tr",
    { dataset: { id: job.id, state: job.state } },
    h("td", {}, h("code", {}, job.id.slice(0, 16))),
    h("td", {}, job.method),
    h("td", {}, adapter),
    h("td", {}, h("span", { class: `badge state-${job.state}` }, job.state), job.phase && !FINAL.has(job.state) ? h("small", { class: "hint" }, ` ${job.phase.replace(/_/g, " ")}`) : null),
    h("td", {}, h("progress", { max: 1, value: job.progress || 0, "aria-label": `Progress of ${job.id}` }), ` ${Math.round((job.progress || 0) * 100)}%`),
    h("td", {}, formatDate(job.created_at)),
    h("td", {}, h("button", { type: "button", class: "secondary small", onclick: onSelect, "aria-label": `Show job ${job.id}` }, "Show")),
  );
}

function renderDetail(detail, job, cancel) {
  detail.hidden = false;
  detail.dataset.state = job.state;
  detail.dataset.id = job.id;
  const metrics = job.metrics || {};
  const series = seriesFrom(metrics.history || []);
  const scalars = Object.entries(metrics).filter(([k, v]) => typeof v === "number" && k !== "adapter_id");
  const pct = Math.round((job.progress || 0) * 100);
  clear(
    detail,
    h("h2", { tabindex: "-1" }, `Job ${job.id}`),
    h(
      "div",
      { class: "job-state" },
      h("span", { class: `badge state-${job.state}`, id: "job-state" }, job.state),
      h("progress", { max: 100, value: pct, "aria-label": "Job progress" }),
      h("span", { id: "job-progress" }, `${pct}%`),
      !FINAL.has(job.state) && job.state !== "cancelling"
        ? h("button", { type: "button", class: "danger small", id: "cancel-job", onclick: () => cancel(job) }, "Cancel job")
        : null,
    ),
    phaseLine(job),
    h("p", { class: "hint" }, `${job.method} · started ${formatDate(job.started_at)} · finished ${formatDate(job.finished_at)}${job.worker ? ` · worker ${job.worker}` : ""}`),
    job.error ? h("p", { class: "status status-error", role: "alert" }, job.error) : null,
    metrics.adapter ? h("p", { class: "status status-ok" }, `Registered adapter ${metrics.adapter}. Activate it on the Adapters page.`) : null,
    series.size
      ? h("div", { class: "charts", id: "charts" }, [...series.entries()].map(([name, points]) => h("figure", {}, lineChart(name, points))))
      : h("p", { class: "hint" }, "Curves appear once the trainer logs its first step."),
    scalars.length
      ? h("details", {}, h("summary", {}, "Latest metrics"), h("dl", { class: "metrics" }, scalars.map(([k, v]) => [h("dt", {}, k), h("dd", {}, formatNumber(v))])))
      : null,
    beforeAfter(metrics.before, metrics.after),
    metrics.gate ? gateSummary(metrics.gate) : null,
    h("h3", {}, "Log"),
    h("pre", { class: "log", id: "job-log", tabindex: "0", "aria-label": "Log tail" }, (job.log_tail || []).join("\n") || "(no log yet)"),
  );
  const log = detail.querySelector("#job-log");
  log.scrollTop = log.scrollHeight;
}

// The job's phase (building data, evaluating, training, gating, registering), its count and the worker's ETA.
function phaseLine(job) {
  if (!job.phase) return null;
  const p = job.phase_progress || {};
  const count = p.total ? ` ${p.done ?? 0}/${p.total}` : "";
  const eta = p.eta_s != null && !FINAL.has(job.state) ? ` · about ${Math.round(p.eta_s)} s left in this phase` : "";
  const budget = p.budget_left_s != null && !FINAL.has(job.state) ? ` · ${Math.round(p.budget_left_s)} s of the budget left` : "";
  return h("p", { class: "hint", id: "job-phase" }, `Phase: ${job.phase.replace(/_/g, " ")}${count}${eta}${budget}`);
}

// The validation scores measured before and after training (loss, perplexity, entropy; DPO rewards), side by side.
function beforeAfter(before, after) {
  if (!after || typeof after !== "object") return null;
  const keys = Object.keys(after).filter((k) => typeof after[k] === "number" && !/runtime|per_second/.test(k));
  if (!keys.length) return null;
  const hasBefore = keys.some((k) => typeof before?.[k] === "number"); // DPO measures only after training
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "before-after", id: "before-after" },
      h("caption", {}, hasBefore ? "Validation before and after training" : "Validation after training"),
      h("thead", {}, h("tr", {}, ["Metric", hasBefore ? "Before" : null, "After"].filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        keys.map((k) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, k),
            hasBefore ? h("td", { class: "num" }, formatNumber(before?.[k])) : null,
            h("td", { class: "num" }, formatNumber(after[k])),
          ),
        ),
      ),
    ),
  );
}

function gateSummary(gate) {
  const verdict = gate.passed === true ? "passed" : gate.passed === false ? "failed" : "not measured";
  return h(
    "p",
    { class: `status status-${gate.passed === false ? "error" : "ok"}` },
    `Evaluation gate ${verdict} against ${gate.baseline}`,
    gate.reasons?.length ? `: ${gate.reasons.join("; ")}` : ".",
  );
}

// The new-job form. Empty hyperparameter fields keep their default (shown as the placeholder).
function jobForm() {
  const status = h("p", { class: "status", role: "status" });
  const method = h("select", { id: "job-method", name: "method" }); // filled from /web/training-defaults (the method table)
  const name = h("input", { id: "job-name", name: "name", value: "assistant", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}", required: true });
  const base = h("input", { id: "job-base", name: "base_adapter", placeholder: "none (start from the base model)" });
  const source = h("select", { id: "job-source" }, h("option", { value: "preferences" }, "Stored preference pairs"), h("option", { value: "file" }, "Upload a dataset file"));
  const provenance = h("select", { id: "job-provenance" }, h("option", { value: "" }, "any provenance"), h("option", { value: "feedback" }, "feedback only"), h("option", { value: "imported" }, "imported only"));
  const file = h("input", { type: "file", id: "job-file", accept: ".jsonl,.json,.csv" });
  const gate = h("input", { type: "checkbox", id: "job-gate", checked: true });
  const extra = h("textarea", { id: "job-extra", rows: 2, placeholder: '{"min_tokens": 1}' });
  const options = h("div", { class: "option-grid", id: "job-options" });
  const submit = h("button", { type: "submit", id: "start-job" }, "Start job");
  const fileRow = h("div", { class: "field", hidden: true }, h("label", { for: "job-file" }, "Dataset (.jsonl, .json, .csv)"), file);
  const provRow = h("div", { class: "field" }, h("label", { for: "job-provenance" }, "Pairs"), provenance);
  let defaults = {};
  const inputs = {};

  const renderOptions = () => {
    const own = defaults[method.value] || {};
    const keep = Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value]));
    clear(options);
    for (const key of Object.keys(own)) {
      const input = h("input", { id: `opt-${key}`, name: key, inputmode: "decimal", placeholder: String(own[key]), value: keep[key] || "" });
      inputs[key] = input;
      options.append(
        h("div", { class: "field" }, h("label", { for: `opt-${key}` }, OPTION_LABELS[key] || key), input, h("small", { class: "hint" }, `default ${own[key]}`)),
      );
    }
    for (const key of Object.keys(inputs)) if (!(key in own)) delete inputs[key];
  };

  source.addEventListener("change", () => {
    fileRow.hidden = source.value !== "file";
    provRow.hidden = source.value === "file";
  });
  method.addEventListener("change", renderOptions);

  const el = h(
    "form",
    { class: "panel job-form", "aria-labelledby": "new-job-title", novalidate: false },
    h("h2", { id: "new-job-title" }, "Start a training job"),
    h(
      "div",
      { class: "form-grid" },
      h("div", { class: "field" }, h("label", { for: "job-method" }, "Method"), method),
      h("div", { class: "field" }, h("label", { for: "job-name" }, "Adapter name"), name),
      h("div", { class: "field" }, h("label", { for: "job-base" }, "Continue from adapter"), base),
      h("div", { class: "field" }, h("label", { for: "job-source" }, "Data"), source),
      provRow,
      fileRow,
    ),
    h("h3", {}, "Hyperparameters"),
    options,
    h("div", { class: "field" }, h("label", { for: "job-extra" }, "Other options (JSON)"), extra),
    h("div", { class: "field inline" }, gate, h("label", { for: "job-gate" }, "Run the evaluation gate against the active version")),
    h("div", { class: "actions" }, submit),
    status,
  );

  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const hyperparameters = parseExtra(extra.value);
      for (const [key, input] of Object.entries(inputs)) {
        const raw = input.value.trim();
        if (!raw) continue;
        const value = Number(raw);
        if (!Number.isFinite(value)) throw new Error(`${OPTION_LABELS[key] || key}: “${raw}” is not a number`);
        hyperparameters[key] = value;
      }
      const data = { source: source.value };
      if (source.value === "file") {
        if (!file.files.length) throw new Error("choose a dataset file first");
        setStatus(status, "Uploading the dataset…");
        const form = new FormData();
        form.append("file", file.files[0], file.files[0].name);
        data.file_id = (await api("/v1/training/files", { method: "POST", form })).id;
      } else if (provenance.value) {
        data.provenance = provenance.value;
      }
      const spec = { method: method.value, name: name.value.trim(), data, hyperparameters, gate: gate.checked };
      if (base.value.trim()) spec.base_adapter = base.value.trim();
      setStatus(status, "Queuing the job…");
      const job = await api("/v1/training/jobs", { method: "POST", json: spec });
      setStatus(status, `Job ${job.id} queued.`, "ok");
      result.onCreated?.(job);
    } catch (exc) {
      setStatus(status, `The job was not started: ${exc.message}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  const result = {
    el,
    onCreated: null,
    setDefaults(values, error) {
      defaults = values || {};
      const methods = Object.keys(defaults);
      if (methods.length) {
        const current = method.value;
        clear(method, methods.map((m) => h("option", { value: m }, m)));
        method.value = methods.includes(current) ? current : methods.includes("dpo") ? "dpo" : methods[0];
      }
      renderOptions();
      if (error) setStatus(status, `Defaults could not be read (${error.message}); empty fields keep the server's defaults.`, "error");
    },
  };
  return result;
}

function parseExtra(text) {
  if (!text.trim()) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (exc) {
    throw new Error(`other options are not valid JSON (${exc.message})`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("other options must be a JSON object");
  return value;
}
