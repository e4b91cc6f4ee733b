// The loan application API, called with the API key kept in this tab's sessionStorage.

const KEY = "fastloans.apiKey";
const BASE = "/api/v1/loan_applications";

/** An HTTP error answered as RFC 9457 problem+json (or a network failure: status 0). */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || (status ? `HTTP ${status}` : "The server could not be reached."));
    this.status = status;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }
}

export const session = {
  /** The signed-in API key, or null. */
  key: () => sessionStorage.getItem(KEY),
  /** Remember the key for this tab only. */
  signIn: (key) => sessionStorage.setItem(KEY, key),
  /** Forget the key. */
  signOut: () => sessionStorage.removeItem(KEY),
};

async function call(method, path, { body, headers = {}, signal, key = session.key() } = {}) {
  const init = { method, signal, cache: "no-store", credentials: "omit", headers: { Accept: "application/json", ...headers } };
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const retry = Number(response.headers.get("Retry-After")) || null;
    const error = new ApiError(response.status, data, retry);
    if (response.status === 401 && key === session.key()) {
      document.dispatchEvent(new CustomEvent("fastloans:unauthorized", { detail: error.message }));
    }
    throw error;
  }
  return data;
}

/** Check a key by reading one application with it (no side effects). */
export const checkKey = (key) => call("GET", `${BASE}?limit=1`, { key });

/** One page of this tenant's applications, newest first: {items, next_cursor}. */
export function listApplications({ status, limit, cursor }, signal) {
  const query = new URLSearchParams();
  if (status) query.set("status", status);
  if (limit) query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  return call("GET", `${BASE}?${query}`, { signal });
}

/** An application; with `wait`, the server holds the answer until it is decided (long poll). */
export const getApplication = (id, { wait = 0, signal } = {}) =>
  call("GET", `${BASE}/${encodeURIComponent(id)}${wait ? `?wait=${wait}` : ""}`, { signal });

/** Submit a new application; the same idempotency key always yields the same application. */
export const submitApplication = (body, idempotencyKey) =>
  call("POST", BASE, { body, headers: { "Idempotency-Key": idempotencyKey } });

/** Change an application (a new revision, decided again). */
export const updateApplication = (id, changes) => call("PATCH", `${BASE}/${encodeURIComponent(id)}`, { body: changes });

/** Withdraw an application. */
export const withdrawApplication = (id) => call("DELETE", `${BASE}/${encodeURIComponent(id)}`);

/** Where an application's adverse-action notice is. */
export const noticePath = (id) => `${BASE}/${encodeURIComponent(id)}/notice`;

/** The adverse-action notice of an application's current decision, as a PDF Blob. */
export async function getNotice(id) {
  const key = session.key();
  const headers = { Accept: "application/pdf" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(noticePath(id), { cache: "no-store", credentials: "omit", headers }).catch(() => {
    throw new ApiError(0);
  });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  return response.blob();
}
