// The application form (new and edit): labelled fields with units and hints, inline
// validation messages (on submit, then as fields change) and the server's field errors in place.

import { FIELDS } from "./fields.js";
import { focus, h, replace } from "./dom.js";

/**
 * Build the form. `initial` pre-fills it (edit); `onSubmit(values)` is awaited and may
 * throw an ApiError whose `errors` name fields. Returns {element, setErrors, setBusy}.
 */
export function applicationForm({ id, initial = {}, submitLabel, busyLabel, onSubmit, onCancel }) {
  const controls = {};
  const messages = {};
  let attempted = false;
  const summary = h("div", { class: "error-summary", tabindex: "-1", hidden: true, "aria-labelledby": `${id}-summary-title` });
  const formMessage = h("p", { class: "notice notice-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button" }, submitLabel);

  const rows = FIELDS.map((field) => {
    const inputId = `${id}-${field.name}`;
    const hintId = `${inputId}-hint`;
    const errorId = `${inputId}-error`;
    const describedBy = [field.hint ? hintId : null, errorId].filter(Boolean).join(" ");
    const attrs = { id: inputId, name: field.name, "aria-describedby": describedBy, required: true,
      class: `control${field.width ? ` control-${field.width}` : ""}` };
    let control;
    if (field.choices) {
      control = h("select", attrs,
        h("option", { value: "" }, "Choose…"),
        field.choices.map(([value, label]) => h("option", { value }, label)));
    } else {
      control = h("input", { ...attrs, ...field.input });
    }
    control.value = initial[field.name] ?? "";
    // Messages appear on submit, then follow each change; appearing on blur would move the button under a click.
    control.addEventListener("change", () => { if (attempted) showError(field.name, field.check(control.value).error); });
    control.addEventListener("input", () => {
      if (control.getAttribute("aria-invalid") === "true" && !field.check(control.value).error) showError(field.name, null);
    });
    controls[field.name] = control;
    messages[field.name] = h("p", { id: errorId, class: "field-error", hidden: true });
    const unit = field.unit ? h("span", { class: "unit" }, ` (${field.unit})`) : null;
    return h("div", { class: "field", "data-field": field.name },
      h("label", { for: inputId }, field.label, unit),
      field.hint ? h("p", { id: hintId, class: "hint" }, field.hint) : null,
      messages[field.name],
      control);
  });

  function showError(name, message) {
    const control = controls[name];
    const box = messages[name];
    control.closest(".field").classList.toggle("field-invalid", Boolean(message));
    if (message) {
      control.setAttribute("aria-invalid", "true");
      replace(box, h("span", { class: "visually-hidden" }, "Error: "), message);
      box.hidden = false;
    } else {
      control.removeAttribute("aria-invalid");
      box.replaceChildren();
      box.hidden = true;
    }
  }

  function showSummary(errors) {
    if (!errors.length) {
      summary.hidden = true;
      return;
    }
    replace(summary,
      h("h2", { id: `${id}-summary-title` }, "There is a problem"),
      h("ul", {}, errors.map(([name, message]) =>
        h("li", {}, h("a", { href: `#${controls[name].id}`, "data-focus": controls[name].id }, message)))));
    summary.hidden = false;
    focus(summary);
  }

  summary.addEventListener("click", (event) => {
    const target = event.target.closest("a[data-focus]");
    if (!target) return;
    event.preventDefault();
    focus(document.getElementById(target.dataset.focus));
  });

  /** Show the server's errors (problem+json `errors`) next to the fields they name; the rest above the form. */
  function setErrors(error) {
    const named = [];
    const other = [];
    for (const { field, message } of error.errors) {
      const name = String(field || "").split(".")[0];
      const text = String(message || "is invalid");
      if (controls[name]) {
        const sentence = text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
        showError(name, sentence);
        named.push([name, `${FIELDS.find((f) => f.name === name).label}: ${sentence}`]);
      } else {
        other.push(text);
      }
    }
    formMessage.hidden = named.length > 0 && other.length === 0;
    formMessage.textContent = named.length && !other.length ? "" : [error.message, ...other].join(" ");
    if (named.length) showSummary(named);
    else focus(formMessage);
  }

  function setBusy(busy) {
    submit.setAttribute("aria-disabled", String(busy));
    submit.textContent = busy ? busyLabel : submitLabel;
    form.setAttribute("aria-busy", String(busy));
  }

  let busy = false;
  const form = h("form", { id, class: "application-form", novalidate: true, method: "post", action: "#" },
    summary,
    formMessage,
    rows,
    h("div", { class: "actions" },
      submit,
      onCancel ? h("button", { type: "button", class: "button button-secondary", onclick: onCancel }, "Cancel") : null));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return; // a second press while the first is in flight does nothing
    attempted = true;
    const values = {};
    const errors = [];
    for (const field of FIELDS) {
      const { value, error } = field.check(controls[field.name].value);
      showError(field.name, error);
      if (error) errors.push([field.name, error]);
      else values[field.name] = value;
    }
    formMessage.hidden = true;
    if (errors.length) {
      showSummary(errors);
      return;
    }
    summary.hidden = true;
    busy = true;
    setBusy(true);
    try {
      await onSubmit(values);
    } catch (error) {
      if (error.name === "AbortError") return;
      setErrors(error);
    } finally {
      busy = false;
      if (form.isConnected) setBusy(false);
    }
  });

  return { element: form, controls, setErrors };
}
