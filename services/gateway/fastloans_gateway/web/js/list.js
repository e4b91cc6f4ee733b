// This tenant's recent applications: a status filter, a page size and cursor paging.

import { listApplications } from "./api.js";
import { badge } from "./application.js";
import { PURPOSES, STATUSES, choiceLabel } from "./fields.js";
import { announce, h, money, replace, time } from "./dom.js";

const LIMITS = [5, 10, 20, 50, 100];

/** Read the list's state from the route's query: status, limit, cursor. */
export function listState(query) {
  const status = STATUSES.some(([v]) => v === query.get("status")) ? query.get("status") : "";
  const limit = LIMITS.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 20;
  return { status, limit, cursor: query.get("cursor") || "" };
}

function route({ status, limit, cursor }) {
  const query = new URLSearchParams();
  if (status) query.set("status", status);
  if (limit !== 20) query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  const text = query.toString();
  return `#/applications${text ? `?${text}` : ""}`;
}

function row(application) {
  return h("tr", {},
    h("td", { "data-label": "Applicant" }, h("a", { href: `#/applications/${application.id}` }, application.applicant_name)),
    h("td", { "data-label": "Status" }, badge(application.status)),
    h("td", { "data-label": "Amount", class: "num" }, money(application.loan_amount)),
    h("td", { "data-label": "Purpose" }, choiceLabel(PURPOSES, application.loan_purpose)),
    h("td", { "data-label": "Risk score", class: "num" }, application.risk_score ?? "—"),
    h("td", { "data-label": "Submitted" }, time(application.submitted_at)));
}

/** The list view for `state`; `history` holds the cursors of the pages seen so far, for "Previous page". */
export function listView({ state, history, flash }) {
  const controller = new AbortController();
  const status = h("select", { id: "filter-status", class: "control" },
    h("option", { value: "" }, "All"),
    STATUSES.map(([value, label]) => h("option", { value }, label)));
  const limit = h("select", { id: "filter-limit", class: "control" }, LIMITS.map((n) => h("option", { value: String(n) }, String(n))));
  status.value = state.status;
  limit.value = String(state.limit);
  const go = (next) => { location.hash = route(next); };
  status.addEventListener("change", () => go({ ...state, status: status.value, cursor: "" }));
  limit.addEventListener("change", () => go({ ...state, limit: Number(limit.value), cursor: "" }));

  const summary = h("p", { class: "list-summary", role: "status", "aria-live": "polite" }, "Loading applications…");
  const results = h("div", { class: "table-wrap" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  const filters = h("form", { class: "filters", method: "get", action: "#", "aria-label": "Filter applications" },
    h("div", { class: "field field-inline" }, h("label", { for: "filter-status" }, "Status"), status),
    h("div", { class: "field field-inline" }, h("label", { for: "filter-limit" }, "Rows per page"), limit));
  filters.addEventListener("submit", (event) => event.preventDefault());

  (async () => {
    try {
      const page = await listApplications(state, controller.signal);
      const position = history.indexOf(state.cursor);
      const earlier = position > 0 ? history[position - 1] : null;
      const what = state.status ? `${choiceLabel(STATUSES, state.status).toLowerCase()} applications` : "applications";
      if (!page.items.length) {
        summary.textContent = state.cursor ? `No more ${what}.` : `No ${what} yet.`;
        results.replaceChildren();
      } else {
        summary.textContent = `Showing ${page.items.length} ${what}${state.cursor ? " (a later page)" : ", newest first"}.`;
        replace(results, h("table", { class: "applications" },
          h("caption", { class: "visually-hidden" }, "Applications, newest first"),
          h("thead", {}, h("tr", {}, ["Applicant", "Status", "Amount", "Purpose", "Risk score", "Submitted"].map((name) =>
            h("th", { scope: "col", class: name === "Amount" || name === "Risk score" ? "num" : null }, name)))),
          h("tbody", {}, page.items.map(row))));
      }
      replace(pager,
        state.cursor ? h("a", { class: "button button-secondary", href: route({ ...state, cursor: earlier ?? "" }), rel: "prev" }, "← Previous page") : null,
        page.next_cursor ? h("a", { class: "button button-secondary", href: route({ ...state, cursor: page.next_cursor }), rel: "next",
          onclick: () => { if (!history.includes(page.next_cursor)) history.push(page.next_cursor); } }, "Next page →") : null);
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
      summary.textContent = `Could not load the applications: ${error.message}`;
      summary.classList.add("notice-error");
    }
  })();

  if (flash) announce(flash);
  return {
    title: "Applications",
    content: [
      h("div", { class: "title-row" }, h("h1", {}, "Applications"), h("a", { class: "button", href: "#/applications/new" }, "New application")),
      flash ? h("p", { class: "notice notice-success" }, flash) : null,
      filters, summary, results, pager,
    ],
    dispose: () => controller.abort(),
  };
}
