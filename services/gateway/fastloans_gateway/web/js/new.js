// A new application. One Idempotency-Key per form fill, kept until the API accepts it,
// so a repeated press or a retry after a lost answer creates one application, not two.

import { submitApplication } from "./api.js";
import { applicationForm } from "./form.js";
import { h } from "./dom.js";

/** The new-application view; `onCreated(application)` runs once it is accepted. */
export function newApplicationView({ onCreated }) {
  let idempotencyKey = crypto.randomUUID();
  const form = applicationForm({
    id: "new-application",
    submitLabel: "Submit application",
    busyLabel: "Submitting…",
    async onSubmit(values) {
      try {
        const created = await submitApplication(values, idempotencyKey);
        idempotencyKey = crypto.randomUUID();
        onCreated(created);
      } catch (error) {
        if (error.errors.some((e) => e.field === "Idempotency-Key")) {
          // An earlier, unanswered attempt of this form had other details; these go as a new application.
          idempotencyKey = crypto.randomUUID();
          error.errors = [];
          error.message = "An earlier attempt of this form may already have been received with different details: "
            + "check Applications before submitting again. Submitting again sends these details as a new application.";
        }
        throw error;
      }
    },
  });
  return {
    title: "New application",
    content: [
      h("h1", {}, "New loan application"),
      h("p", { class: "lead" }, "Every field is required. The decision usually takes a few seconds and appears on the next page."),
      form.element,
    ],
  };
}
