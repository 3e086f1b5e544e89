// The adapters page (admins): every version of every adapter with its lineage and its gate result beside the
// active version's, activation (with an explicit "activate anyway" when the gate failed) and rollback. A swap
// fires MODELS_CHANGED so the chat's model picker follows without a reload.

import { api } from "./api.js";
import { MODELS_CHANGED } from "./data.js";
import { clear, confirmDialog, formatDate, formatNumber, h, setStatus } from "./ui.js";

export function mount(container) {
  const list = h("div", { id: "adapter-list" });
  const status = h("p", { class: "status", role: "status", id: "adapters-status" });
  container.append(h("div", { class: "page adapters" }, h("h1", {}, "Adapters"), status, list));

  async function refresh() {
    try {
      const body = await api("/v1/adapters");
      const rows = body.data || [];
      const names = [...new Set(rows.map((row) => row.name))].sort();
      clear(
        list,
        names.map((name) => adapterGroup(name, rows.filter((r) => r.name === name), rows, body.active?.[name], actions)),
      );
      if (!rows.length) setStatus(status, "No adapters yet: train one on the Training page.");
    } catch (exc) {
      setStatus(status, `Adapters could not be listed: ${exc.message}`, "error");
    }
  }

  async function run(label, request, after) {
    setStatus(status, `${label}…`);
    try {
      const row = await request();
      setStatus(status, `${row.name} now serves ${row.id}. New chat messages to “${row.name}” use it.`, "ok");
      window.dispatchEvent(new CustomEvent(MODELS_CHANGED));
      after?.(row);
    } catch (exc) {
      if (exc.code === "gate_failed") {
        setStatus(status, exc.message, "error");
        return exc;
      }
      setStatus(status, `${label} failed: ${exc.message}`, "error");
    }
    await refresh();
    return null;
  }

  const actions = {
    async activate(row) {
      const post = (force) => api(`/v1/adapters/${encodeURIComponent(row.name)}/activate`, { method: "POST", json: { version: row.version, force } });
      const failed = await run(`Activating ${row.id}`, () => post(false));
      if (!failed) return;
      const ok = await confirmDialog(
        "Activate despite the gate?",
        `${failed.message}. Activate ${row.id} anyway?`,
        "Activate anyway",
      );
      if (ok) await run(`Activating ${row.id}`, () => post(true));
      else await refresh();
    },
    async rollback(name) {
      const ok = await confirmDialog("Roll back?", `${name} goes back to the version that was active before this one.`, "Roll back");
      if (ok) await run(`Rolling back ${name}`, () => api(`/v1/adapters/${encodeURIComponent(name)}/rollback`, { method: "POST" }));
    },
  };

  refresh();
  return null;
}

function adapterGroup(name, rows, all, activeId, actions) {
  const active = rows.find((row) => row.id === activeId) || null;
  rows.sort((a, b) => b.version - a.version);
  return h(
    "section",
    { class: "panel adapter", "aria-labelledby": `adapter-${name}`, dataset: { name } },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: `adapter-${name}` }, name),
      h("span", { class: "hint", "data-active": activeId || "" }, activeId ? `active: ${activeId}` : "no active version"),
      active ? h("div", { class: "active-scores", "aria-label": "Active version's gate scores" }, scoreList(gateScores(active.gate))) : null,
      active ? h("button", { type: "button", class: "secondary small", onclick: () => actions.rollback(name) }, "Roll back") : null,
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["Version", "Status", "Lineage", "Gate", "Scores", "Baseline's scores", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((row) => versionRow(row, active, all, actions))),
      ),
    ),
  );
}

function parentName(row, all) {
  const parent = row.lineage?.parent;
  if (!parent && !row.parent_id) return "the base model";
  const match = all.find((other) => parent?.path && other.path === parent.path);
  return match ? match.id : `adapter ${String(row.parent_id || parent?.id).slice(0, 12)}`;
}

function lineage(row, all) {
  const l = row.lineage || {};
  const sel = l.selection || {};
  const hp = l.hyperparameters || {};
  const parts = [
    `${row.method || l.method || "?"} from ${parentName(row, all)}`,
    sel.train != null ? `${sel.train} train / ${sel.validation ?? 0} validation examples` : null,
    hp.max_steps > 0 ? `${hp.max_steps} steps` : hp.num_train_epochs ? `${hp.num_train_epochs} epochs` : null,
    hp.learning_rate ? `lr ${hp.learning_rate}` : null,
    row.job_id ? `job ${String(row.job_id).slice(0, 16)}` : null,
    `created ${formatDate(row.created_at)}`,
  ].filter(Boolean);
  return h("ul", { class: "plain" }, parts.map((p) => h("li", {}, p)));
}

// The gate's scores for this version, as one flat {label: value}.
function gateScores(gate, which = "candidate") {
  const scores = {};
  const side = gate?.[which] || {};
  for (const [group, values] of Object.entries(side)) {
    if (values && typeof values === "object")
      for (const [k, v] of Object.entries(values)) if (typeof v === "number" && !["pairs", "questions"].includes(k)) scores[`${group} ${k}`] = v;
  }
  return scores;
}

function scoreList(scores) {
  const entries = Object.entries(scores);
  if (!entries.length) return h("span", { class: "hint" }, "—");
  return h("dl", { class: "scores" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, formatNumber(v, 3))]));
}

function versionRow(row, active, all, actions) {
  const gate = row.gate;
  const verdict = !gate ? "not run" : gate.passed === true ? "passed" : gate.passed === false ? "failed" : "not measured";
  const isActive = row.status === "active";
  return h(
    "tr",
    { dataset: { id: row.id, status: row.status }, class: isActive ? "active-row" : "" },
    h("td", {}, h("strong", {}, `v${row.version}`), h("br"), h("small", { class: "hint" }, row.id)),
    h("td", {}, h("span", { class: `badge status-${row.status}` }, row.status), row.activated_at ? h("small", { class: "hint" }, ` since ${formatDate(row.activated_at)}`) : null),
    h("td", {}, lineage(row, all)),
    h(
      "td",
      {},
      h("span", { class: `badge gate-${verdict.replace(" ", "-")}` }, verdict),
      gate?.baseline ? h("small", { class: "hint" }, ` vs ${gate.baseline}`) : null,
      gate?.reasons?.length ? h("small", { class: "hint block" }, gate.reasons.join("; ")) : null,
    ),
    h("td", {}, scoreList(gateScores(gate))),
    h("td", {}, gate?.baseline ? [h("small", { class: "hint block" }, gate.baseline), scoreList(gateScores(gate, "baseline_metrics"))] : scoreList({})),
    h(
      "td",
      {},
      isActive
        ? null
        : h("button", { type: "button", class: "small", onclick: () => actions.activate(row), "aria-label": `Activate ${row.id}` }, "Activate"),
    ),
  );
}
