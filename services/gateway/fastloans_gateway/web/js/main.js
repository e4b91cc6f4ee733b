// The page's entry point: a small hash router (#/applications, #/applications/new,
// #/applications/<id>, #/reviews, #/reviews/<id>), sign-in and sign-out, focus on each new view's heading.
// What the signed-in key may do (read applications, review, supervise) decides the links and the start page.

import { session } from "./api.js";
import { applicationView } from "./application.js";
import { announce, focus, h, replace } from "./dom.js";
import { listState, listView } from "./list.js";
import { newApplicationView } from "./new.js";
import { caseView, queueState, queueView } from "./reviews.js";
import { signInView } from "./signin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null;
let flash = null;
let signInMessage = null;
let justCreated = null;
const pages = { key: null, cursors: [""] };

function parse(hash) {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), query: new URLSearchParams(query) };
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function view({ parts, query }) {
  if (!session.key()) {
    const message = signInMessage;
    signInMessage = null;
    return signInView({ message, onSignedIn: render });
  }
  const access = session.access();
  if (parts[0] === "reviews" && (access.review || access.supervise)) {
    if (parts.length === 1) return queueView({ state: queueState(query), access });
    if (parts.length === 2) return caseView({ id: parts[1], access });
  }
  if (!access.applications && (access.review || access.supervise) && parts[0] !== "reviews") {
    return queueView({ state: queueState(query), access });
  }
  if (parts[0] === "applications" && parts[1] === "new" && parts.length === 2) {
    return newApplicationView({ onCreated: (created) => {
      justCreated = created;
      navigate(`#/applications/${created.id}`);
    } });
  }
  if (parts[0] === "applications" && parts.length === 2) {
    const initial = justCreated?.id === parts[1] ? justCreated : null;
    justCreated = null;
    return applicationView({ id: parts[1], initial, onWithdrawn: (application) => {
      flash = `The application for ${application.applicant_name} was withdrawn.`;
      navigate("#/applications");
    } });
  }
  if (parts.length === 0 || (parts[0] === "applications" && parts.length === 1)) {
    const state = listState(query);
    const key = `${state.status}|${state.limit}`;
    if (pages.key !== key) Object.assign(pages, { key, cursors: [""] });
    const message = flash;
    flash = null;
    return listView({ state, history: pages.cursors, flash: message });
  }
  return { title: "Page not found", content: [h("h1", {}, "Page not found"),
    h("p", {}, h("a", { href: "#/applications" }, "See the applications"))] };
}

function render() {
  current?.dispose?.();
  const route = parse(location.hash);
  current = view(route);
  const signedIn = Boolean(session.key());
  const access = session.access();
  nav.hidden = !signedIn;
  const shown = { applications: access.applications, reviews: access.review || access.supervise, supervise: access.supervise };
  for (const item of nav.querySelectorAll("li[data-access]")) item.hidden = !shown[item.dataset.access];
  const queue = route.parts[0] === "reviews" || (!access.applications && shown.reviews);
  const section = queue
    ? (route.parts.length === 2 ? null : queueState(route.query).state === "awaiting_approval" ? "approvals" : "reviews")
    : route.parts[1] === "new" ? "new" : route.parts.length <= 1 ? "list" : null;
  for (const link of nav.querySelectorAll("a[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${current.title} — Fast Loans`;
  replace(main, current.content);
  focus(current.focusTarget ?? main.querySelector("h1"));
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  signInMessage = "You have signed out.";
  announce("Signed out.");
  render();
});

document.addEventListener("fastloans:unauthorized", () => {
  session.signOut();
  signInMessage = "Your API key is no longer accepted. Sign in again.";
  render();
});

// The skip link moves focus without touching the route in the URL's hash.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  focus(main.querySelector("h1") ?? main);
});

window.addEventListener("hashchange", render);
render();
