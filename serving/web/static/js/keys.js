// The keys page (admins): every key issued through the API (name, owner, role, collections, created, last used,
// limits, status), a form that creates one, revoke (confirmed) and rotate. A new or rotated secret is shown once in a
// read-only field with a copy button; it lives only in that field and is wiped when dismissed or when the page
// unmounts (the server keeps only its digest: it cannot be shown again). Keys from the settings file are not listed.

import { api } from "./api.js";
import { clear, confirmDialog, formatDate, h, setStatus } from "./ui.js";

export function mount(container) {
  const status = h("p", { class: "status", role: "status", id: "keys-status" });
  const secret = h("section", { class: "panel secret-box", id: "key-secret", hidden: true, "aria-live": "polite" });
  const body = h("tbody", { id: "keys-body" });
  const table = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );

  async function refresh() {
    try {
      const keys = (await api("/v1/keys")).data || [];
      keys.sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
      clear(body, keys.map((key) => keyRow(key, actions)));
      if (!keys.length) clear(body, h("tr", {}, h("td", { colspan: COLUMNS.length, class: "hint" }, "No keys issued through the API yet.")));
    } catch (exc) {
      setStatus(status, `Keys could not be listed: ${exc.message}`, "error");
    }
  }

  const reveal = (title, issued) => showSecret(secret, title, issued);
  const actions = {
    async create(spec, form) {
      setStatus(status, `Creating ${spec.name}…`);
      try {
        const issued = await api("/v1/keys", { method: "POST", json: spec });
        form.reset();
        setStatus(status, `Key ${issued.name} created.`, "ok");
        reveal(`New key “${issued.name}”`, issued);
      } catch (exc) {
        setStatus(status, `The key could not be created: ${exc.message}`, "error");
      }
      await refresh();
    },
    async revoke(key) {
      const ok = await confirmDialog(
        "Revoke this key?",
        `${key.name} (${key.prefix}…) stops working at once on this server and on every replica within a sync interval. This cannot be undone.`,
        "Revoke",
      );
      if (!ok) return;
      try {
        await api(`/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
        setStatus(status, `Key ${key.name} revoked.`, "ok");
      } catch (exc) {
        setStatus(status, `Revoking ${key.name} failed: ${exc.message}`, "error");
      }
      await refresh();
    },
    async rotate(key) {
      const ok = await confirmDialog(
        "Rotate this key?",
        `${key.name} gets a new secret; the current one stops working at once.`,
        "Rotate",
      );
      if (!ok) return;
      try {
        const issued = await api(`/v1/keys/${encodeURIComponent(key.id)}/rotate`, { method: "POST" });
        setStatus(status, `Key ${key.name} rotated.`, "ok");
        reveal(`New secret for “${issued.name}”`, issued);
      } catch (exc) {
        setStatus(status, `Rotating ${key.name} failed: ${exc.message}`, "error");
      }
      await refresh();
    },
  };

  container.append(
    h(
      "div",
      { class: "page keys" },
      h("h1", {}, "Keys"),
      status,
      secret,
      createForm(actions.create),
      h("section", { class: "panel", "aria-labelledby": "keys-title" }, h("h2", { id: "keys-title" }, "Issued keys"), table),
    ),
  );
  refresh();
  return () => wipeSecret(secret); // a secret never outlives the page
}

const COLUMNS = ["Name", "Owner", "Role", "Collections", "Created", "Last used", "Limits", "Status", ""];

function field(label, input, hint = null) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint ? h("small", { class: "hint" }, hint) : null);
}

function positiveInt(value) {
  return value.trim() ? Number.parseInt(value, 10) : undefined;
}

// The create form; onCreate(spec, form) gets the request body as the API takes it (empty fields left out).
function createForm(onCreate) {
  const name = h("input", { id: "key-name", name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const role = h("select", { id: "key-role", name: "role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "admin"));
  const collections = h("input", { id: "key-collections", name: "collections", placeholder: "handbook, finance", autocomplete: "off" });
  const expires = h("input", { id: "key-expires", name: "expires_at", type: "datetime-local" });
  const tokens = h("input", { id: "key-tokens", name: "tokens_per_day", type: "number", min: 1, step: 1 });
  const rpm = h("input", { id: "key-rpm", name: "requests_per_minute", type: "number", min: 1, step: 1 });
  const syncRole = () => {
    collections.disabled = role.value === "admin"; // an admin key reads every collection
  };
  role.addEventListener("change", syncRole);
  const form = h(
    "form",
    { id: "key-form", class: "panel", "aria-labelledby": "key-form-title" },
    h("h2", { id: "key-form-title" }, "Create a key"),
    h(
      "div",
      { class: "form-grid" },
      field("Name", name, "Who or what holds the key."),
      field("Role", role),
      field("Collections", collections, "Comma-separated; empty: every collection."),
      field("Expires", expires, "Empty: never."),
      field("Tokens per day", tokens, "Empty: unlimited."),
      field("Requests per minute", rpm, "Empty: unlimited."),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create key")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const names = collections.value.split(",").map((c) => c.trim()).filter(Boolean);
    const spec = { name: name.value.trim(), role: role.value };
    if (role.value === "member" && names.length) spec.collections = names;
    if (expires.value) spec.expires_at = new Date(expires.value).toISOString();
    const perDay = positiveInt(tokens.value);
    const perMinute = positiveInt(rpm.value);
    if (perDay !== undefined) spec.tokens_per_day = perDay;
    if (perMinute !== undefined) spec.requests_per_minute = perMinute;
    onCreate(spec, form).then(syncRole);
  });
  return form;
}

function wipeSecret(box) {
  for (const input of box.querySelectorAll("input")) input.value = "";
  clear(box);
  box.hidden = true;
}

// The secret, once: a read-only field, a copy button and a dismiss button that wipes it.
function showSecret(box, title, issued) {
  wipeSecret(box);
  const value = h("input", { id: "key-secret-value", type: "text", readonly: true, value: issued.key, "aria-label": "The new key's secret", spellcheck: "false" });
  const note = h("p", { class: "status", role: "status" });
  const copy = h("button", { type: "button", class: "secondary", id: "key-secret-copy" }, "Copy");
  copy.addEventListener("click", async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(value.value);
      setStatus(note, "Copied to the clipboard.", "ok");
    } catch {
      setStatus(note, "Copying was refused by the browser: the secret is selected, press Ctrl+C.");
    }
  });
  const done = h("button", { type: "button", id: "key-secret-dismiss" }, "I have saved it");
  done.addEventListener("click", () => wipeSecret(box));
  clear(
    box,
    h("h2", {}, title),
    h("p", { class: "warning", role: "alert" }, "Copy this secret now. It is shown this once: the server keeps only its digest and cannot show it again."),
    h("div", { class: "secret-row" }, value, copy),
    note,
    h("div", { class: "actions" }, done),
  );
  box.hidden = false;
  value.focus();
  value.select();
}

function limits(key) {
  const parts = [
    key.tokens_per_day ? `${key.tokens_per_day} tokens/day` : null,
    key.requests_per_minute ? `${key.requests_per_minute} requests/min` : null,
    key.expires_at ? `expires ${formatDate(key.expires_at)}` : null,
  ].filter(Boolean);
  return parts.length ? h("ul", { class: "plain" }, parts.map((p) => h("li", {}, p))) : h("span", { class: "hint" }, "none");
}

function keyRow(key, actions) {
  const live = key.status === "active";
  return h(
    "tr",
    { dataset: { id: key.id, name: key.name, status: key.status } },
    h("td", {}, h("strong", {}, key.name), h("small", { class: "hint" }, `${key.prefix}…`)),
    h("td", {}, key.owner || "—"),
    h("td", {}, key.role),
    h("td", {}, key.collections ? key.collections.join(", ") : h("span", { class: "hint" }, "all")),
    h("td", {}, formatDate(key.created_at), key.rotated_at ? h("small", { class: "hint" }, `rotated ${formatDate(key.rotated_at)}`) : null),
    h("td", {}, formatDate(key.last_used_at)),
    h("td", {}, limits(key)),
    h("td", {}, h("span", { class: `badge key-${key.status}` }, key.status), key.revoked_at ? h("small", { class: "hint" }, formatDate(key.revoked_at)) : null),
    h(
      "td",
      { class: "row-actions" },
      live ? h("button", { type: "button", class: "secondary small", onclick: () => actions.rotate(key), "aria-label": `Rotate ${key.name}` }, "Rotate") : null,
      live ? h("button", { type: "button", class: "danger small", onclick: () => actions.revoke(key), "aria-label": `Revoke ${key.name}` }, "Revoke") : null,
    ),
  );
}
