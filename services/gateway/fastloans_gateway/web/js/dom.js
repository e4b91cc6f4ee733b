// Building DOM nodes without innerHTML, so applicant data is always text, never markup.

/** An element with attributes (`class`, `for`, `on<event>`, booleans) and children (nodes or strings). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nested arrays, nodes, strings; null/false skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Say something to screen-reader users through the page's polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A fresh text node after a tick is announced even when the message repeats.
  setTimeout(() => { region.textContent = message; }, 50);
}

/** Move focus to an element (made focusable if needed) without scrolling surprises. */
export function focus(el) {
  if (!el) return;
  if (!el.hasAttribute("tabindex") && !/^(A|BUTTON|INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) {
    el.setAttribute("tabindex", "-1");
  }
  el.focus();
}

/** Date-time in the reader's locale, as a <time> element. */
export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const text = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" }).format(date);
  return h("time", { datetime: iso }, text);
}

/** A decimal string ("2000.00") with thousands separators, exact (never through a float). */
export function money(value) {
  const [whole, fraction = "00"] = String(value).split(".");
  return `${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${fraction.padEnd(2, "0")}`;
}
