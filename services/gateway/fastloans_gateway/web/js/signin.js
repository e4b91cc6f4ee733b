// Sign in with an API key; it is kept in this tab's sessionStorage only, never in a URL.

import { checkKey, session } from "./api.js";
import { focus, h } from "./dom.js";

/** The sign-in view; calls `onSignedIn()` once a key has been accepted by the API (and what it may do is known). */
export function signInView({ message, onSignedIn }) {
  const inputId = "api-key";
  const error = h("p", { id: "api-key-error", class: "field-error", hidden: true });
  const input = h("input", { id: inputId, type: "password", class: "control", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "api-key-hint api-key-error", required: true });
  const button = h("button", { type: "submit", class: "button" }, "Sign in");
  const notice = message ? h("p", { class: "notice", role: "status" }, message) : null;
  let busy = false;

  function fail(text) {
    error.textContent = text;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.closest(".field").classList.add("field-invalid");
    focus(input);
  }

  // No `name` on the key field and method=post: even without scripts the key never reaches a URL.
  const form = h("form", { class: "sign-in", novalidate: true, method: "post", action: "#" },
    h("div", { class: "field" },
      h("label", { for: inputId }, "API key"),
      h("p", { id: "api-key-hint", class: "hint" }, "The key your lender gave you. It is kept in this browser tab only and forgotten when you close it."),
      error,
      input),
    h("div", { class: "actions" }, button));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const key = input.value.trim();
    if (!key) {
      fail("Enter your API key.");
      return;
    }
    busy = true;
    button.setAttribute("aria-disabled", "true");
    try {
      session.signIn(key, await checkKey(key));
      onSignedIn();
    } catch (problem) {
      if (problem.status === 401) fail("This API key is unknown or has been revoked. Check it and try again.");
      else if (problem.status === 403) fail("This API key can neither read applications nor the review queue. Ask for a key with the read or review scope.");
      else fail(problem.message);
    } finally {
      busy = false;
      button.setAttribute("aria-disabled", "false");
    }
  });

  return {
    title: "Sign in",
    content: [h("h1", {}, "Sign in"), notice, form],
    focusTarget: message ? null : input,
  };
}
