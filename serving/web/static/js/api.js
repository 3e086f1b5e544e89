// The API client: the session's key (sessionStorage), JSON calls whose failures carry the server's own words
// (the OpenAI error body's `message`), the SSE chat stream read from fetch's ReadableStream, and uploads through
// XMLHttpRequest (the one browser API that reports upload progress).

const KEY = "assistant.apiKey";

export const session = {
  key: sessionStorage.getItem(KEY) || "",
  me: null, // {name, role, collections, authenticated}
  get isAdmin() {
    return this.me?.role === "admin";
  },
};

export function storeKey(key) {
  session.key = key;
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  // X-Requested-With: the server refuses state-changing browser requests without it (or a key, or JSON), so a page
  // on another site cannot post forms to a server running without keys.
  const out = { "X-Requested-With": "assistant-console", ...extra };
  if (session.key) out.Authorization = `Bearer ${session.key}`;
  return out;
}

// The error's message in words: the OpenAI-shaped body's message, else the HTTP status text.
export function errorFromBody(status, statusText, text) {
  let message = `${status} ${statusText || "error"}`.trim();
  let code = null;
  try {
    const body = JSON.parse(text);
    message = body?.error?.message || (typeof body?.detail === "string" ? body.detail : message);
    code = body?.error?.code || null;
  } catch {
    if (text && text.length < 300) message = `${message}: ${text}`;
  }
  if (status === 401) message = `${message} — sign in again with a valid API key`;
  return new ApiError(status, message, code);
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, `the server could not be reached (${exc.message})`);
  }
}

export async function api(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const res = await send(path, init);
  const text = await res.text();
  if (!res.ok) {
    const error = errorFromBody(res.status, res.statusText, text);
    if (res.status === 401) window.dispatchEvent(new CustomEvent("auth-failed", { detail: error }));
    throw error;
  }
  return text ? JSON.parse(text) : null;
}

// Yields every JSON payload of an SSE response ("data: {...}" events) until "data: [DONE]".
export async function* streamChat(body, signal) {
  const res = await send("/v1/chat/completions", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!res.ok) throw errorFromBody(res.status, res.statusText, await res.text());
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const payload = JSON.parse(data);
      if (payload.error) throw new ApiError(500, payload.error.message || "the stream failed");
      yield payload;
    }
    if (done) return;
  }
}

// Uploads one file to /v1/documents; onProgress(fraction) follows the bytes sent. Resolves with the JSON body.
export function uploadFile(file, collection, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    if (session.key) xhr.setRequestHeader("Authorization", `Bearer ${session.key}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, body: JSON.parse(xhr.responseText) });
      else reject(errorFromBody(xhr.status, xhr.statusText, xhr.responseText));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload could not reach the server")));
    const form = new FormData();
    form.append("files", file, file.name);
    form.append("collection", collection);
    xhr.send(form);
  });
}

// Who the key is. Falls back for a server without /v1/me: a key that can list models is treated as an admin.
// Whether the server offers sign-in with the company's identity provider ({oidc, login_url}); public.
export async function signInConfig() {
  try {
    return await api("/auth/config");
  } catch {
    return { oidc: false, login_url: null };
  }
}

// Ends a console session signed in through the identity provider (the server clears its HttpOnly cookie).
export async function signOutSession() {
  await api("/auth/logout", { method: "POST" });
}

export async function whoAmI() {
  try {
    const me = await api("/v1/me");
    // A server without keys (open on loopback) lets anyone do anything: the console shows everything.
    return me.authenticated === false ? { ...me, role: "admin", collections: null } : me;
  } catch (exc) {
    if (exc.status !== 404) throw exc;
    await api("/v1/models");
    return { name: session.key ? "key" : "anonymous", role: "admin", collections: null, authenticated: !!session.key };
  }
}
