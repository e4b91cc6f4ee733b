// One application: its status, updated live (long poll) until decided; then the outcome,
// the risk score and the reasons with their points; edit (a new revision) and withdraw.

import { getApplication, getNotice, noticePath, updateApplication, withdrawApplication } from "./api.js";
import { EMPLOYMENT, PURPOSES, choiceLabel } from "./fields.js";
import { applicationForm } from "./form.js";
import { announce, focus, h, money, replace, time } from "./dom.js";

const WAIT_SECONDS = 25;
const OUTCOMES = {
  pending: "Pending",
  approved: "Approved",
  rejected: "Rejected",
  referred: "Referred to a loan officer",
};
const FACTORS = {
  credit_score: "Credit score",
  debt_to_income: "Debt-to-income ratio",
  loan_to_income: "Loan-to-income ratio",
  employment_status: "Employment status",
  loan_purpose: "Loan purpose",
};

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** A status badge: text and colour, never colour alone. */
export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, OUTCOMES[status] ?? status);
}

/** A factor's name ("debt_to_income" → "Debt-to-income ratio"). */
export function factorLabel(factor) {
  return FACTORS[factor] ?? factor.replaceAll("_", " ");
}

function factorValue(reason) {
  const label = factorLabel(reason.factor);
  const value = reason.factor === "loan_purpose" ? choiceLabel(PURPOSES, reason.value)
    : reason.factor === "employment_status" ? choiceLabel(EMPLOYMENT, reason.value) : reason.value;
  return `${label}: ${value}`;
}

function reasonsTable(application) {
  if (!application.reasons.length) {
    return h("p", {}, "No rule added risk points: the lowest possible risk score.");
  }
  return h("table", { class: "reasons" },
    h("caption", {}, "How the risk score was reached"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Reason"),
      h("th", { scope: "col" }, "Applicant's value"),
      h("th", { scope: "col", class: "num" }, "Points"))),
    h("tbody", {}, application.reasons.map((reason) => h("tr", {},
      h("td", { "data-label": "Reason" }, reason.text),
      h("td", { "data-label": "Value" }, factorValue(reason)),
      h("td", { "data-label": "Points", class: "num" }, `+${reason.points}`)))),
    h("tfoot", {}, h("tr", {},
      h("th", { scope: "row", colspan: "2" }, "Risk score"),
      h("td", { class: "num", "data-label": "Risk score" }, String(application.risk_score)))));
}

const CHANGES = {
  loan_amount: (change) => `Ask for ${money(change.suggested)} instead of ${money(change.current)}.`,
  monthly_debt: (change) => `Bring monthly debt payments down to ${money(change.suggested)} (from ${money(change.current)}).`,
};

/** The counteroffer and the single changes that would approve, for an adverse decision. */
function alternatives(application) {
  if (application.status !== "rejected" && application.status !== "referred") return null;
  const offer = application.counteroffer;
  const changes = (application.what_would_change ?? []).filter((change) => CHANGES[change.fact]);
  return h("section", { class: "counteroffer", "aria-labelledby": "counteroffer-title" },
    h("h3", { id: "counteroffer-title" }, "What the policy would approve"),
    offer
      ? h("p", { class: "offer" }, "Counteroffer: ", h("strong", { class: "offer-amount" }, money(offer.loan_amount)),
        ` would be approved (risk score ${offer.risk_score}), every other detail unchanged.`)
      : h("p", { class: "offer" }, "No smaller loan amount would be approved with these details."),
    changes.length
      ? h("ul", { class: "changes" }, changes.map((change) => h("li", {}, CHANGES[change.fact](change))))
      : null);
}

/** A link to the adverse-action notice; opened with the signed-in key (the API needs it). */
function noticeLink(application) {
  if (application.status !== "rejected" && application.status !== "referred") return null;
  const error = h("span", { class: "notice-error-text", role: "alert" });
  const link = h("a", { href: noticePath(application.id), class: "notice-link" }, "Adverse-action notice");
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const url = URL.createObjectURL(await getNotice(application.id));
      window.open(url, "_blank", "noopener");
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (problem) {
      error.textContent = ` ${problem.message}`;
    }
  });
  return h("p", {}, link, error);
}

function decision(application) {
  if (application.status === "pending") {
    return h("p", { class: "pending-note" }, h("span", { class: "spinner", "aria-hidden": "true" }),
      `Revision ${application.revision} is being scored and decided. This page updates by itself.`);
  }
  const principal = application.principal_reasons.length
    ? h("section", { class: "principal", "aria-labelledby": "principal-title" },
      h("h3", { id: "principal-title" }, "Main reasons for this decision"),
      h("ol", {}, application.principal_reasons.map((reason) =>
        h("li", {}, reason.text, " ", h("span", { class: "points" }, `(${factorValue(reason)}, +${reason.points} points)`)))))
    : null;
  return [
    h("p", { class: "risk" }, "Risk score ", h("strong", { class: "risk-score" }, String(application.risk_score)),
      " — the sum of the points each rule below added; lower is better."),
    decider(application),
    principal,
    alternatives(application),
    noticeLink(application),
    reasonsTable(application),
  ];
}

const DECIDED_BY = { policy: "The credit policy", review: "A loan officer (review)" };

/** Who made the current decision, and the reviewer's reasons when a loan officer did. */
function decider(application) {
  if (application.decided_by !== "review") return null;
  return h("section", { class: "reviewed", "aria-labelledby": "reviewed-title" },
    h("h3", { id: "reviewed-title" }, "Decided on review by a loan officer"),
    h("p", {}, "A loan officer reviewed this application and made the decision."),
    application.review_reasons.length && application.status !== "rejected"
      ? h("ul", { class: "review-reasons" }, application.review_reasons.map((reason) => h("li", {}, reason.text)))
      : null);
}

/** The application's facts as a description list (also shown on a review case). */
export function details(application) {
  const rows = [
    ["Applicant", application.applicant_name],
    ["Credit score", String(application.credit_score)],
    ["Loan amount", money(application.loan_amount)],
    ["Purpose", choiceLabel(PURPOSES, application.loan_purpose)],
    ["Monthly income", money(application.monthly_income)],
    ["Monthly debt payments", money(application.monthly_debt)],
    ["Employment status", choiceLabel(EMPLOYMENT, application.employment_status)],
    ["Revision", String(application.revision)],
    ["Policy version", application.policy_version ?? "—"],
    ["Decided by", DECIDED_BY[application.decided_by] ?? "—"],
    ["Submitted", time(application.submitted_at)],
    ["Decided", time(application.decided_at)],
    ["Created", time(application.created_at)],
    ["Application ID", h("code", {}, application.id)],
  ];
  return h("dl", { class: "details" }, rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

/**
 * The application view. `initial` is the application as just returned by a submit (so the
 * page starts waiting for the decision at once); `onWithdrawn(application)` runs after a withdrawal.
 */
export function applicationView({ id, initial = null, onWithdrawn }) {
  const controller = new AbortController();
  const { signal } = controller;
  let current = null;
  let expectedRevision = 1;
  let polling = false;

  const heading = h("h1", {}, "Loan application");
  const liveStatus = h("p", { class: "status-line", role: "status", "aria-live": "polite", "aria-atomic": "true" });
  const connection = h("p", { class: "notice", role: "status", hidden: true });
  const decisionBox = h("div", { class: "decision" });
  const detailsBox = h("div");
  const editBox = h("section", { class: "panel", hidden: true, "aria-labelledby": "edit-title" });
  const confirmBox = h("section", { class: "panel panel-warning", hidden: true, "aria-labelledby": "withdraw-title" });
  const editButton = h("button", { type: "button", class: "button", "aria-expanded": "false", "aria-controls": "edit-panel" }, "Edit application");
  const withdrawButton = h("button", { type: "button", class: "button button-danger" }, "Withdraw application");
  editBox.id = "edit-panel";
  const statusPanel = h("section", { class: "panel status-panel", "aria-labelledby": "decision-title" },
    h("h2", { id: "decision-title" }, "Decision"), liveStatus, connection, decisionBox);
  const body = h("div", { hidden: true },
    statusPanel,
    h("div", { class: "actions" }, editButton, withdrawButton),
    editBox,
    confirmBox,
    h("section", { class: "panel", "aria-labelledby": "details-title" }, h("h2", { id: "details-title" }, "Application details"), detailsBox));
  const problem = h("p", { class: "notice notice-error", role: "alert", hidden: true });

  function render(application) {
    current = application;
    heading.textContent = `Application — ${application.applicant_name}`;
    document.title = `${application.applicant_name} — ${OUTCOMES[application.status]} — Fast Loans`;
    statusPanel.className = `panel status-panel status-${application.status}`;
    replace(liveStatus, h("span", { class: "visually-hidden" }, "Status: "), badge(application.status), " ",
      h("span", {}, application.status === "pending"
        ? `revision ${application.revision}, deciding…`
        : `revision ${application.revision}, risk score ${application.risk_score}.`));
    replace(decisionBox, decision(application));
    replace(detailsBox, details(application));
    body.hidden = false;
    statusPanel.setAttribute("aria-busy", String(application.status === "pending"));
  }

  function gone() {
    body.hidden = true;
    problem.textContent = "This application does not exist or has been withdrawn.";
    problem.hidden = false;
    heading.textContent = "Application not found";
    focus(heading);
  }

  async function poll() {
    if (polling) return;
    polling = true;
    let backoff = 0;
    try {
      while (!signal.aborted && (current.status === "pending" || current.revision < expectedRevision)) {
        try {
          const next = await getApplication(id, { wait: WAIT_SECONDS, signal });
          connection.hidden = true;
          backoff = 0;
          if (next.revision < expectedRevision) {
            await sleep(300, signal); // a replica that has not caught up with the latest revision yet
            continue;
          }
          render(next);
        } catch (error) {
          if (error.name === "AbortError" || error.status === 401) return;
          if (error.status === 404) {
            gone();
            return;
          }
          backoff = error.retryAfter ? error.retryAfter * 1000 : Math.min(Math.max(1000, backoff * 2), 15000);
          connection.textContent = "Connection lost; retrying…";
          connection.hidden = false;
          await sleep(backoff, signal);
        }
      }
    } finally {
      polling = false;
    }
  }

  function closeEdit({ restoreFocus }) {
    editBox.hidden = true;
    editBox.replaceChildren();
    editButton.setAttribute("aria-expanded", "false");
    if (restoreFocus) focus(editButton);
  }

  editButton.addEventListener("click", () => {
    if (!editBox.hidden) {
      closeEdit({ restoreFocus: true });
      return;
    }
    confirmBox.hidden = true;
    const form = applicationForm({
      id: "edit-application",
      initial: current,
      submitLabel: "Save changes",
      busyLabel: "Saving…",
      onCancel: () => closeEdit({ restoreFocus: true }),
      async onSubmit(values) {
        const changes = Object.fromEntries(Object.entries(values).filter(([name, value]) => String(value) !== String(current[name])));
        if (!Object.keys(changes).length) {
          throw Object.assign(new Error("Nothing has changed: edit a field, or cancel."), { errors: [] });
        }
        const revised = await updateApplication(id, changes);
        expectedRevision = revised.revision;
        closeEdit({ restoreFocus: false });
        render(revised);
        announce(`Changes saved as revision ${revised.revision}. Deciding again.`);
        focus(statusPanel.querySelector("h2"));
        poll();
      },
    });
    replace(editBox, h("h2", { id: "edit-title" }, "Edit application"),
      h("p", {}, "Saving makes a new revision, which is scored and decided again."), form.element);
    editBox.hidden = false;
    editButton.setAttribute("aria-expanded", "true");
    focus(form.controls.applicant_name);
  });

  withdrawButton.addEventListener("click", () => {
    closeEdit({ restoreFocus: false });
    const yes = h("button", { type: "button", class: "button button-danger" }, "Yes, withdraw it");
    const no = h("button", { type: "button", class: "button button-secondary" }, "Keep the application");
    const error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    let busy = false;
    no.addEventListener("click", () => {
      confirmBox.hidden = true;
      focus(withdrawButton);
    });
    yes.addEventListener("click", async () => {
      if (busy) return;
      busy = true;
      yes.setAttribute("aria-disabled", "true");
      try {
        await withdrawApplication(id);
        controller.abort();
        onWithdrawn(current);
      } catch (problem) {
        if (problem.status === 404) {
          onWithdrawn(current);
          return;
        }
        error.textContent = problem.message;
        error.hidden = false;
      } finally {
        busy = false;
        yes.setAttribute("aria-disabled", "false");
      }
    });
    replace(confirmBox,
      h("h2", { id: "withdraw-title" }, "Withdraw this application?"),
      h("p", {}, "It will not be decided or listed any more. This cannot be undone."),
      error,
      h("div", { class: "actions" }, yes, no));
    confirmBox.hidden = false;
    focus(yes);
  });

  async function load() {
    try {
      const application = initial ?? await getApplication(id, { signal });
      expectedRevision = application.revision;
      render(application);
      poll();
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
      if (error.status === 404) gone();
      else {
        problem.textContent = error.message;
        problem.hidden = false;
      }
    }
  }
  load();

  return {
    title: "Loan application",
    content: [h("p", { class: "back" }, h("a", { href: "#/applications" }, "← All applications")), heading, problem, body],
    dispose: () => controller.abort(),
  };
}
