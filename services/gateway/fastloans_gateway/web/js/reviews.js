// The review queue for loan officers: the queue with the time left before each legal deadline, and a case
// page with the application, the policy's decision record, the decision packet and the history, where a
// reviewer claims, decides or asks for information and a supervisor approves or returns an override.
// The server enforces every rule (claims, four eyes, reasons); this page offers the actions and shows its answers.

import { getReview, listReviews, reviewAction } from "./api.js";
import { details, factorLabel } from "./application.js";
import { focus, h, money, replace, time } from "./dom.js";

export const CASE_STATES = [
  ["open", "Open"],
  ["claimed", "Claimed"],
  ["awaiting_approval", "Awaiting approval"],
  ["waiting_for_information", "Waiting for information"],
  ["decided", "Decided"],
  ["withdrawn", "Withdrawn"],
  ["superseded", "Superseded"],
];
const STATE_LABELS = Object.fromEntries(CASE_STATES);
const STATE_STYLE = {
  open: "referred",
  claimed: "pending",
  awaiting_approval: "pending",
  waiting_for_information: "pending",
  decided: "approved",
  withdrawn: "neutral",
  superseded: "neutral",
};
const CASE_OUTCOMES = [["approve", "Approve"], ["reject", "Reject"]];
const OUTCOME_LABELS = Object.fromEntries(CASE_OUTCOMES);
const ACTIONS = {
  open: "Opened",
  claim: "Claimed",
  decide: "Decided",
  approve: "Approved",
  return: "Returned",
  request_information: "Information requested",
  withdraw: "Withdrawn",
  supersede: "Superseded",
};
const MAX_REASONS = 4;

/** The queue's filter from the route's query: a case state, or "" for every unfinished case; and the cursor. */
export function queueState(query) {
  const state = CASE_STATES.some(([value]) => value === query.get("state")) ? query.get("state") : "";
  return { state, cursor: query.get("cursor") || "" };
}

function route({ state, cursor }) {
  const query = new URLSearchParams();
  if (state) query.set("state", state);
  if (cursor) query.set("cursor", cursor);
  const text = query.toString();
  return `#/reviews${text ? `?${text}` : ""}`;
}

/** A case state as a badge (text and colour, never colour alone). */
function stateBadge(state) {
  return h("span", { class: `badge badge-${STATE_STYLE[state] ?? "neutral"}` }, STATE_LABELS[state] ?? state);
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** "29 days 23 hours left", "5 hours 2 minutes left", "overdue by 1 day 4 hours". */
export function timeLeft(seconds) {
  const size = Math.abs(seconds);
  const days = Math.floor(size / 86400);
  const hours = Math.floor((size % 86400) / 3600);
  const minutes = Math.floor((size % 3600) / 60);
  const text = days ? `${plural(days, "day")} ${plural(hours, "hour")}`
    : hours ? `${plural(hours, "hour")} ${plural(minutes, "minute")}` : plural(minutes, "minute");
  return seconds < 0 ? `overdue by ${text}` : `${text} left`;
}

function timeLeftCell(item) {
  return h("span", { class: "time-left" },
    h("span", { class: item.seconds_left < 0 ? "overdue" : null }, timeLeft(item.seconds_left)),
    item.state === "waiting_for_information" ? h("span", { class: "hint-inline" }, " (clock stopped)") : null,
    item.escalated ? [" ", h("span", { class: "badge badge-escalated" }, "Escalated")] : null);
}

function shortId(id) {
  return id.slice(0, 8);
}

function row(item) {
  return h("tr", {},
    h("td", { "data-label": "Case" }, h("a", { href: `#/reviews/${item.id}` }, `Case ${shortId(item.id)}`)),
    h("td", { "data-label": "State" }, stateBadge(item.state)),
    h("td", { "data-label": "Time left" }, timeLeftCell(item)),
    h("td", { "data-label": "Due" }, time(item.due_at)),
    h("td", { "data-label": "Recommendation" }, OUTCOME_LABELS[item.recommendation] ?? "—"),
    h("td", { "data-label": "Risk score", class: "num" }, String(item.risk_score)),
    h("td", { "data-label": "Claimed by" }, item.claimed_by ?? "—"));
}

/** The queue: unfinished cases (or those in `state.state`), earliest deadline first. */
export function queueView({ state, access }) {
  const controller = new AbortController();
  const approvals = state.state === "awaiting_approval";
  const title = approvals ? "Awaiting approval" : "Review queue";
  const filter = h("select", { id: "filter-state", class: "control" },
    h("option", { value: "" }, "Unfinished cases"),
    CASE_STATES.map(([value, label]) => h("option", { value }, label)));
  filter.value = state.state;
  filter.addEventListener("change", () => { location.hash = route({ state: filter.value, cursor: "" }); });
  const filters = h("form", { class: "filters", method: "get", action: "#", "aria-label": "Filter cases" },
    h("div", { class: "field field-inline" }, h("label", { for: "filter-state" }, "Show"), filter));
  filters.addEventListener("submit", (event) => event.preventDefault());

  const summary = h("p", { class: "list-summary", role: "status", "aria-live": "polite" }, "Loading cases…");
  const results = h("div", { class: "table-wrap" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const who = access.actor ? `Signed in as ${access.actor}` : "Signed in";
  const can = [access.review ? "review" : null, access.supervise ? "supervise" : null].filter(Boolean).join(" and ");
  const lead = approvals
    ? "Decisions that override the policy's recommendation wait here for a second person. You cannot approve your own."
    : "Referred applications, earliest deadline first. The deadline is the regulator's: 30 days from a completed application.";

  (async () => {
    try {
      const page = await listReviews(state, controller.signal);
      const what = state.state ? `${STATE_LABELS[state.state].toLowerCase()} cases` : "unfinished cases";
      if (!page.items.length) {
        summary.textContent = state.cursor ? `No more ${what}.` : `No ${what}.`;
      } else {
        const escalated = page.items.filter((item) => item.escalated).length;
        summary.textContent = `Showing ${page.items.length} of the ${what}${state.cursor ? " (a later page)" : ""}`
          + `${escalated ? `, ${escalated} escalated` : ""}, earliest deadline first.`;
        replace(results, h("table", { class: "cases stacked" },
          h("caption", { class: "visually-hidden" }, `${title}, earliest deadline first`),
          h("thead", {}, h("tr", {}, ["Case", "State", "Time left", "Due", "Recommendation", "Risk score", "Claimed by"].map((name) =>
            h("th", { scope: "col", class: name === "Risk score" ? "num" : null }, name)))),
          h("tbody", {}, page.items.map(row))));
      }
      replace(pager,
        state.cursor ? h("a", { class: "button button-secondary", href: route({ ...state, cursor: "" }) }, "← First page") : null,
        page.next_cursor ? h("a", { class: "button button-secondary", href: route({ ...state, cursor: page.next_cursor }), rel: "next" }, "Next page →") : null);
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
      summary.textContent = `Could not load the review queue: ${error.message}`;
      summary.classList.add("notice-error");
    }
  })();

  return {
    title,
    content: [
      h("h1", {}, title),
      h("p", { class: "lead" }, `${who} (${can}). `, lead),
      filters, summary, results, pager,
    ],
    dispose: () => controller.abort(),
  };
}

/** What a refused action means, before the server's own words. */
function refusal(error) {
  if (error.status === 409) return "Refused: another reviewer holds this case, or it has changed since you opened it.";
  if (error.status === 403) return "Not allowed:";
  if (error.status === 422) return "Check the decision:";
  if (error.status === 404) return "This case no longer exists for your tenant.";
  return "The action failed:";
}

function change(item) {
  const label = item.fact === "loan_amount" ? "Loan amount" : item.fact === "monthly_debt" ? "Monthly debt payments" : item.fact;
  return h("li", {}, `${label}: ${money(item.suggested)} instead of ${money(item.current)}`);
}

function packetSection(packet) {
  const rules = packet.rules ?? [];
  return h("section", { class: "panel", "aria-labelledby": "packet-title" },
    h("h2", { id: "packet-title" }, "Decision packet"),
    h("dl", { class: "details" },
      h("div", {}, h("dt", {}, "Referred by"), h("dd", {}, h("code", {}, packet.refer_rule ?? "—"))),
      h("div", {}, h("dt", {}, "Refer band"), h("dd", {}, packet.band ?? "—")),
      h("div", {}, h("dt", {}, "Points above an approval"), h("dd", {}, String(packet.points_above_approval ?? "—"))),
      h("div", {}, h("dt", {}, "Points below a rejection"), h("dd", {}, String(packet.points_below_rejection ?? "—")))),
    rules.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "packet-rules stacked" },
        h("caption", {}, "The rules that put the application in the band, most points first"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Rule"), h("th", { scope: "col" }, "Factor"),
          h("th", { scope: "col" }, "Reason code"), h("th", { scope: "col", class: "num" }, "Points"))),
        h("tbody", {}, rules.map((rule) => h("tr", {},
          h("td", { "data-label": "Rule" }, h("code", {}, rule.rule_id)),
          h("td", { "data-label": "Factor" }, factorLabel(rule.factor)),
          h("td", { "data-label": "Reason code" }, h("code", {}, rule.reason_code ?? "—")),
          h("td", { "data-label": "Points", class: "num" }, `+${rule.points}`))))))
      : h("p", {}, "No rule added points."),
    h("h3", {}, "One change that would approve"),
    (packet.to_approve ?? []).length ? h("ul", { class: "changes to-approve" }, packet.to_approve.map(change)) : h("p", {}, "None."),
    h("h3", {}, "One change that would reject"),
    (packet.to_reject ?? []).length ? h("ul", { class: "changes to-reject" }, packet.to_reject.map(change)) : h("p", {}, "None."));
}

function recordSection(record) {
  if (!record) {
    return h("section", { class: "panel", "aria-labelledby": "record-title" },
      h("h2", { id: "record-title" }, "The policy's decision"), h("p", {}, "No decision record."));
  }
  return h("section", { class: "panel", "aria-labelledby": "record-title" },
    h("h2", { id: "record-title" }, "The policy's decision"),
    h("dl", { class: "details" },
      h("div", {}, h("dt", {}, "Outcome"), h("dd", {}, record.outcome)),
      h("div", {}, h("dt", {}, "Risk score"), h("dd", {}, String(record.risk_score))),
      h("div", {}, h("dt", {}, "Policy"), h("dd", {}, `${record.policy.name}, version ${record.policy.version}`)),
      h("div", {}, h("dt", {}, "Decided"), h("dd", {}, time(record.decided_at)))),
    record.reasons.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "record-reasons stacked" },
        h("caption", {}, "How the risk score was reached"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Reason"), h("th", { scope: "col" }, "Code"),
          h("th", { scope: "col", class: "num" }, "Points"))),
        h("tbody", {}, record.reasons.map((reason) => h("tr", {},
          h("td", { "data-label": "Reason" }, reason.text),
          h("td", { "data-label": "Code" }, h("code", {}, reason.reason_code)),
          h("td", { "data-label": "Points", class: "num" }, `+${reason.points}`))))))
      : h("p", {}, "No rule added risk points."));
}

function detailText(details) {
  return Object.entries(details ?? {})
    .filter(([, value]) => value !== null && value !== "" && !(Array.isArray(value) && !value.length))
    .map(([name, value]) => `${name.replaceAll("_", " ")}: ${Array.isArray(value) ? value.join(", ") : value}`)
    .join("; ");
}

function historySection(history) {
  return h("section", { class: "panel", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "History"),
    h("p", { class: "hint" }, "Append-only: each entry carries the hash of the one before it."),
    h("div", { class: "table-wrap" }, h("table", { class: "history stacked" },
      h("caption", { class: "visually-hidden" }, "Case history, oldest first"),
      h("thead", {}, h("tr", {}, ["#", "When", "Who", "Action", "State", "Details", "Hash"].map((name) =>
        h("th", { scope: "col" }, name)))),
      h("tbody", {}, history.map((entry) => h("tr", {},
        h("td", { "data-label": "#" }, String(entry.seq)),
        h("td", { "data-label": "When" }, time(entry.at)),
        h("td", { "data-label": "Who" }, entry.actor),
        h("td", { "data-label": "Action" }, ACTIONS[entry.action] ?? entry.action),
        h("td", { "data-label": "State" }, STATE_LABELS[entry.state] ?? entry.state),
        h("td", { "data-label": "Details" }, detailText(entry.details) || "—"),
        h("td", { "data-label": "Hash" }, h("code", { title: entry.hash }, entry.hash.slice(0, 12)))))))));
}

function decisionSummary(decision) {
  return h("section", { class: "panel", "aria-labelledby": "reviewer-decision-title" },
    h("h2", { id: "reviewer-decision-title" }, "Reviewer's decision"),
    h("dl", { class: "details" },
      h("div", {}, h("dt", {}, "Outcome"), h("dd", {}, OUTCOME_LABELS[decision.outcome])),
      h("div", {}, h("dt", {}, "Decided by"), h("dd", {}, decision.decided_by)),
      h("div", {}, h("dt", {}, "Override of the recommendation"), h("dd", {}, decision.override ? "Yes" : "No")),
      h("div", {}, h("dt", {}, "Approved by"), h("dd", {}, decision.approved_by ?? "—")),
      h("div", {}, h("dt", {}, "Reason codes"), h("dd", {}, decision.reason_codes.length ? decision.reason_codes.join(", ") : "—")),
      h("div", {}, h("dt", {}, "Note"), h("dd", {}, decision.note ?? "—"))));
}

function caseFacts(item) {
  const claim = item.claimed_by ? [item.claimed_by, " until ", time(item.claim_expires_at)] : "—";
  const rows = [
    ["State", stateBadge(item.state)],
    ["Time left", timeLeftCell(item)],
    ["Due", time(item.due_at)],
    ["Escalated after", time(item.escalate_at)],
    ["Policy's recommendation", OUTCOME_LABELS[item.recommendation] ?? "—"],
    ["Risk score", String(item.risk_score)],
    ["Claimed by", claim],
    ["Opened", time(item.opened_at)],
    ["Revision", String(item.revision)],
    ["Case ID", h("code", {}, item.id)],
  ];
  return h("dl", { class: "details" }, rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

/** The case page: what the reviewer needs, and the actions the key's scopes allow on the case as it stands. */
export function caseView({ id, access }) {
  const controller = new AbortController();
  let current = null;
  let busy = false;
  const heading = h("h1", {}, "Review case");
  const problem = h("div", { class: "notice notice-error", role: "alert", tabindex: "-1", hidden: true });
  const flash = h("p", { class: "notice notice-success", role: "status", tabindex: "-1", hidden: true });
  const factsBox = h("div");
  const actionsBox = h("section", { class: "panel", "aria-labelledby": "actions-title" });
  const rest = h("div");
  const body = h("div", { hidden: true },
    h("section", { class: "panel status-panel", "aria-labelledby": "case-title" }, h("h2", { id: "case-title" }, "Case"), factsBox),
    actionsBox, rest);

  function showProblem(error) {
    const items = (error.errors ?? []).map((item) => h("li", {}, `${item.field}: ${item.message}`));
    replace(problem, h("p", {}, h("strong", {}, refusal(error)), " ", error.message), items.length ? h("ul", {}, items) : null);
    problem.hidden = false;
    flash.hidden = true;
    focus(problem);
  }

  async function act(action, payload, done) {
    if (busy) return;
    busy = true;
    problem.hidden = true;
    for (const button of actionsBox.querySelectorAll("button")) button.setAttribute("aria-disabled", "true");
    try {
      const moved = await reviewAction(id, action, { version: current.version, ...payload });
      await reload();
      flash.textContent = done(moved);
      flash.hidden = false;
      focus(flash); // a status message, read when it appears and when focused
    } catch (error) {
      if (error.status === 401) return;
      showProblem(error);
      await reload().catch(() => {});
    } finally {
      busy = false;
      for (const button of actionsBox.querySelectorAll("button")) button.setAttribute("aria-disabled", "false");
    }
  }

  function button(label, onClick, style = "") {
    return h("button", { type: "button", class: `button ${style}`.trim(), onclick: onClick }, label);
  }

  function claimBlock(item) {
    const mine = item.state === "claimed" && item.claimed_by === access.actor;
    const other = item.state === "claimed" && !mine;
    return [
      other ? h("p", {}, `Claimed by ${item.claimed_by} until `, time(item.claim_expires_at),
        ". Claiming is refused while that claim lasts.") : null,
      mine ? h("p", {}, "You hold the claim until ", time(item.claim_expires_at), ". Any action renews it; so does this button.") : null,
      // Sent without the version read: a claim takes the case as it now is, and a refusal names who holds it.
      h("div", { class: "actions" }, button(mine ? "Renew my claim" : "Claim this case", () =>
        act("claim", { version: undefined }, () => "You hold the claim on this case."))),
    ];
  }

  function decisionForm(item) {
    const options = current.reason_options ?? [];
    const errors = h("div", { class: "error-summary", tabindex: "-1", hidden: true, "aria-labelledby": "decision-errors-title" });
    const outcome = CASE_OUTCOMES.map(([value, label]) => h("div", { class: "choice" },
      h("input", { type: "radio", name: "outcome", id: `outcome-${value}`, value }),
      h("label", { for: `outcome-${value}` }, label,
        item.recommendation === value ? h("span", { class: "unit" }, " (the policy's recommendation)") : null)));
    const ticked = []; // in the order ticked: the first is the main reason
    const reasons = options.map((option) => h("div", { class: "choice" },
      h("input", { type: "checkbox", name: "reason_codes", id: `reason-${option.code}`, value: option.code,
        onchange: (event) => {
          const at = ticked.indexOf(option.code);
          if (event.target.checked && at < 0) ticked.push(option.code);
          if (!event.target.checked && at >= 0) ticked.splice(at, 1);
        } }),
      h("label", { for: `reason-${option.code}` }, option.text, " ", h("code", {}, option.code))));
    const note = h("textarea", { id: "decision-note", class: "control", rows: "3", maxlength: "2000", "aria-describedby": "decision-note-hint" });
    const outcomeSet = h("fieldset", { class: "field", id: "decision-outcome" }, h("legend", {}, "Outcome"), outcome);
    const reasonSet = h("fieldset", { class: "field", id: "decision-reasons" },
      h("legend", {}, "Reason codes"),
      h("p", { class: "hint" }, `From the reason catalogue, only those of factors the policy scored for this application. `
        + `One to ${MAX_REASONS} for a rejection; they become the applicant's principal reasons, in the order you tick them.`),
      reasons.length ? reasons : h("p", {}, "The policy scored no factor, so no reason code applies."));
    const form = h("form", { class: "decision-form", novalidate: true, method: "post", action: "#", "aria-labelledby": "decide-title" },
      h("h3", { id: "decide-title" }, "Decide"),
      errors, outcomeSet, reasonSet,
      h("div", { class: "field" },
        h("label", { for: "decision-note" }, "Note"),
        h("p", { id: "decision-note-hint", class: "hint" }, "Why you decided so. Required when you do not follow the recommendation; "
          + "such an override then waits for a supervisor. Kept in the case, never sent to the applicant."),
        note),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "button" }, "Record decision")));

    function invalid(list) {
      for (const set of [outcomeSet, reasonSet, note.closest(".field")]) set.classList.remove("field-invalid");
      if (!list.length) {
        errors.hidden = true;
        return false;
      }
      for (const [target] of list) document.getElementById(target)?.closest(".field")?.classList.add("field-invalid");
      replace(errors, h("h2", { id: "decision-errors-title" }, "There is a problem"),
        h("ul", {}, list.map(([target, message]) => h("li", {}, h("a", { href: `#${target}`, onclick: (event) => {
          event.preventDefault();
          focus(document.getElementById(target).querySelector("input") ?? document.getElementById(target));
        } }, message)))));
      errors.hidden = false;
      focus(errors);
      return true;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = form.querySelector("input[name=outcome]:checked")?.value;
      const checked = new Set([...form.querySelectorAll("input[name=reason_codes]:checked")].map((box) => box.value));
      const codes = [...ticked.filter((code) => checked.has(code)), ...[...checked].filter((code) => !ticked.includes(code))];
      const text = note.value.trim();
      const list = [];
      if (!chosen) list.push(["decision-outcome", "Choose an outcome."]);
      if (chosen === "reject" && !codes.length) list.push(["decision-reasons", "Choose at least one reason code for a rejection."]);
      if (codes.length > MAX_REASONS) list.push(["decision-reasons", `Choose at most ${MAX_REASONS} reason codes.`]);
      if (chosen && chosen !== item.recommendation && !text) {
        list.push(["decision-note", "Explain the override in the note: it differs from the policy's recommendation."]);
      }
      if (invalid(list)) return;
      act("decision", { outcome: chosen, reason_codes: codes, note: text || null }, (moved) =>
        moved.state === "awaiting_approval"
          ? "Decision recorded. It overrides the recommendation, so it now awaits a supervisor's approval."
          : "Decision recorded and final: the applicant will be notified.");
    });
    return form;
  }

  function informationForm() {
    const items = h("textarea", { id: "information-items", class: "control", rows: "3", "aria-describedby": "information-hint" });
    const form = h("form", { class: "information-form", novalidate: true, method: "post", action: "#", "aria-labelledby": "information-title" },
      h("h3", { id: "information-title" }, "Request information"),
      h("div", { class: "field" },
        h("label", { for: "information-items" }, "What the applicant should send"),
        h("p", { id: "information-hint", class: "hint" }, "One item per line, up to 10. The deadline's clock stops until the applicant answers."),
        items),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "button button-secondary" }, "Request information")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const list = items.value.split("\n").map((line) => line.trim()).filter(Boolean);
      if (!list.length) {
        showProblem({ status: 422, message: "Write at least one item to ask for.", errors: [] });
        return;
      }
      act("request-information", { items: list }, () => "Information requested. The case waits for the applicant's answer.");
    });
    return form;
  }

  function approvalBlock(item) {
    const own = item.decision?.decided_by === access.actor;
    const note = h("textarea", { id: "return-note", class: "control", rows: "2", maxlength: "2000" });
    return [
      own ? h("p", { class: "notice" }, "You made this decision: another supervisor must approve or return it (four eyes).") : null,
      h("div", { class: "actions" },
        button("Approve the decision", () => act("approve", {}, () => "Approved: the decision is final and the applicant will be notified."))),
      h("div", { class: "field" }, h("label", { for: "return-note" }, "Why you return it (optional)"), note),
      h("div", { class: "actions" },
        button("Return to the queue", () => act("return", { note: note.value.trim() || null }, () => "Returned: the case is open again."), "button-secondary")),
    ];
  }

  function actions(item) {
    const parts = [];
    if (access.review && (item.state === "open" || item.state === "claimed")) parts.push(claimBlock(item));
    if (access.review && item.state === "claimed" && item.claimed_by === access.actor) {
      parts.push(decisionForm(item), informationForm());
    }
    if (access.supervise && item.state === "awaiting_approval") parts.push(approvalBlock(item));
    if (!parts.length) {
      const why = item.state === "awaiting_approval" ? "It awaits a supervisor's approval."
        : item.state === "waiting_for_information" ? "It waits for the applicant's answer (a change to the application)."
          : "Nothing more happens to it.";
      parts.push(h("p", {}, `This case is ${STATE_LABELS[item.state].toLowerCase()}. ${why}`));
    }
    return parts;
  }

  function render(item) {
    current = item;
    const name = item.application?.applicant_name;
    heading.textContent = name ? `Review case — ${name}` : "Review case";
    document.title = `${heading.textContent} — ${STATE_LABELS[item.state]} — Fast Loans`;
    replace(factsBox, caseFacts(item));
    replace(actionsBox, h("h2", { id: "actions-title" }, "Actions"), actions(item));
    replace(rest,
      item.decision ? decisionSummary(item.decision) : null,
      item.information_requested?.length
        ? h("section", { class: "panel", "aria-labelledby": "asked-title" }, h("h2", { id: "asked-title" }, "Information requested"),
          h("ul", {}, item.information_requested.map((line) => h("li", {}, line))))
        : null,
      packetSection(item.packet ?? {}),
      recordSection(item.decision_record),
      h("section", { class: "panel", "aria-labelledby": "application-title" },
        h("h2", { id: "application-title" }, "Application"),
        item.application ? details(item.application) : h("p", {}, "The application is gone.")),
      historySection(item.history));
    body.hidden = false;
  }

  async function reload() {
    render(await getReview(id, controller.signal));
  }

  (async () => {
    try {
      await reload();
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return;
      heading.textContent = error.status === 404 ? "Case not found" : "Review case";
      showProblem(error);
    }
  })();

  return {
    title: "Review case",
    content: [h("p", { class: "back" }, h("a", { href: "#/reviews" }, "← Review queue")), heading, problem, flash, body],
    dispose: () => controller.abort(),
  };
}
