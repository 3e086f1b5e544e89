// Lookups several pages share: the models the key may chat with, the collections it can see, the active adapters.

import { api, session } from "./api.js";

// Fired after an activation or a rollback, so an open model picker refreshes without a page reload.
export const MODELS_CHANGED = "models-changed";

export async function listModels() {
  const body = await api("/v1/models");
  return body.data || [];
}

// {name: "name@vN"} for admins (from the registry); {} for keys that may not read it.
export async function activeAdapters() {
  if (!session.isAdmin) return {};
  try {
    return (await api("/v1/adapters")).active || {};
  } catch {
    return {};
  }
}

// Collections the key may read: its scope when it has one, else those holding documents it can list.
export async function listCollections() {
  const names = new Set(session.me?.collections || []);
  if (!session.me?.collections) {
    const docs = await api("/v1/documents?limit=1000");
    for (const doc of docs.data || []) names.add(doc.collection);
  }
  return [...names].sort();
}
