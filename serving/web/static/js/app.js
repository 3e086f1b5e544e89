// The console's shell: sign-in, the hash router (#/chat, #/documents, #/sources, #/training, #/adapters, #/keys,
// #/audit) and the navigation.
// Pages are modules exporting mount(container) -> optional cleanup; admin-only pages are hidden from other keys and
// refuse to mount for them (the API refuses their calls too: the page never relies on hiding alone).

import { ApiError, session, signInConfig, signOutSession, storeKey, whoAmI } from "./api.js";
import * as chat from "./chat.js";
import * as documents from "./documents.js";
import * as sources from "./sources.js";
import * as training from "./training.js";
import * as adapters from "./adapters.js";
import * as keys from "./keys.js";
import * as audit from "./audit.js";
import { clear, h, setStatus } from "./ui.js";

const ROUTES = {
  chat: { page: chat, title: "Chat" },
  documents: { page: documents, title: "Documents" },
  sources: { page: sources, title: "Sources", admin: true },
  training: { page: training, title: "Training", admin: true },
  adapters: { page: adapters, title: "Adapters", admin: true },
  keys: { page: keys, title: "Keys", admin: true },
  audit: { page: audit, title: "Audit", admin: true },
};

const $ = (id) => document.getElementById(id);
let cleanup = null;

function showSignIn(message = "", kind = "info") {
  unmountPage();
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  setStatus($("sign-in-status"), message, kind);
  $("api-key").focus();
}

function unmountPage() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  clear($("page"));
}

function showShell() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  for (const link of document.querySelectorAll("#nav a[data-admin]")) link.hidden = !session.isAdmin;
  const me = session.me;
  const scope = me.collections ? ` · ${me.collections.join(", ")}` : "";
  $("who-name").textContent = `${me.name} (${me.role}${scope})`;
  $("sign-out").hidden = !me.authenticated;
}

function route() {
  if (!session.me) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "chat";
  const target = ROUTES[name] || ROUTES.chat;
  unmountPage();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${target.title} · Assistant console`;
  const page = $("page");
  if (target.admin && !session.isAdmin) {
    page.append(
      h("section", { class: "panel" }, h("h1", {}, target.title), h("p", { role: "alert" }, "This page is for admin keys.")),
    );
    return;
  }
  cleanup = target.page.mount(page);
}

async function signIn(key) {
  storeKey(key);
  try {
    session.me = await whoAmI();
  } catch (exc) {
    session.me = null;
    storeKey("");
    showSignIn(exc instanceof ApiError ? exc.message : String(exc), "error");
    return false;
  }
  showShell();
  route();
  $("main").focus();
  return true;
}

async function boot() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    setStatus($("sign-in-status"), "Checking the key…");
    await signIn($("api-key").value.trim());
    $("api-key").value = "";
  });
  $("sign-out").addEventListener("click", async () => {
    // without a key the console is signed in by its session cookie (identity provider): the server clears it
    if (!session.key) await signOutSession().catch(() => {});
    storeKey("");
    session.me = null;
    showSignIn("Signed out.");
  });
  signInConfig().then((config) => {
    if (config.oidc) {
      $("oidc-login").href = config.login_url;
      $("oidc-sign-in").hidden = false;
    }
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("auth-failed", (event) => {
    if (session.key || session.me) {
      storeKey("");
      session.me = null;
      showSignIn(event.detail.message, "error");
    }
  });
  if (session.key) {
    await signIn(session.key);
    return;
  }
  // No key yet: a server without keys (open on loopback) answers /v1/me without one.
  try {
    session.me = await whoAmI();
    showShell();
    route();
  } catch {
    showSignIn();
  }
}

boot();
