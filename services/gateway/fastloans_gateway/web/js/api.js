// The loan application and review queue APIs, called with the API key kept in this tab's sessionStorage.

const KEY = "fastloans.apiKey";
const ACCESS = "fastloans.access";
const BASE = "/api/v1/loan_applications";
const REVIEWS = "/api/v1/reviews";

/** An HTTP error answered as RFC 9457 problem+json (or a network failure: status 0). */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || (status ? `HTTP ${status}` : "The server could not be reached."));
    this.status = status;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }
}

const NO_ACCESS = { applications: false, review: false, supervise: false, actor: null };

export const session = {
  /** The signed-in API key, or null. */
  key: () => sessionStorage.getItem(KEY),
  /** What the key may do, as found at sign-in: {applications, review, supervise, actor}. A key signed in
   *  before the page knew of scopes has only this: it read applications. */
  access() {
    try {
      return { ...NO_ACCESS, ...JSON.parse(sessionStorage.getItem(ACCESS) ?? '{"applications": true}') };
    } catch {
      return { ...NO_ACCESS };
    }
  },
  /** Remember the key (and what it may do) for this tab only. */
  signIn(key, access) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ACCESS, JSON.stringify(access));
  },
  /** Forget the key. */
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACCESS);
  },
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

/**
 * Check a key by reading one application and one review case with it (no side effects): what it may do,
 * {applications, review, supervise, actor}. Throws the applications' error when it may do neither.
 */
export async function checkKey(key) {
  const [applications, reviews] = await Promise.allSettled([
    call("GET", `${BASE}?limit=1`, { key }),
    call("GET", `${REVIEWS}?limit=1`, { key }),
  ]);
  if (applications.status === "rejected" && reviews.status === "rejected") {
    const refused = [applications.reason, reviews.reason].find((error) => error.status !== 403);
    throw refused ?? applications.reason;
  }
  const scopes = reviews.status === "fulfilled" ? reviews.value.caller.scopes : [];
  const all = scopes.includes("admin");
  return {
    applications: applications.status === "fulfilled",
    review: all || scopes.includes("review"),
    supervise: all || scopes.includes("supervise"),
    actor: reviews.status === "fulfilled" ? reviews.value.caller.actor : null,
  };
}

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

/** One page of the review queue, earliest due first: {items, next_cursor, caller}. */
export function listReviews({ state, cursor }, signal) {
  const query = new URLSearchParams({ limit: "50" });
  if (state) query.set("state", state);
  if (cursor) query.set("cursor", cursor);
  return call("GET", `${REVIEWS}?${query}`, { signal });
}

/** A review case with its application, decision record, packet, history and reason options. */
export const getReview = (id, signal) => call("GET", `${REVIEWS}/${encodeURIComponent(id)}`, { signal });

/** An action on a review case: claim, decision, request-information, approve or return. */
export const reviewAction = (id, action, body = {}) =>
  call("POST", `${REVIEWS}/${encodeURIComponent(id)}/${action}`, { body });
