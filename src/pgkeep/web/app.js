// pgkeep console: sign-in and the hash router. Plain JavaScript modules against the pgkeep
// API; no build step, no CDN. Views: #/ (overview), #/targets/NAME, #/jobs, #/audit, #/storage.

import { clearToken, onSignedOut, setToken, token } from "./api.js";
import { wireRestoreDialog } from "./actions.js";
import { clearNotices, loaded, problem, setRefresh } from "./shell.js";
import { targetView } from "./target.js";
import { $ } from "./ui.js";
import { audit, jobs, overview, storage } from "./views.js";

const LIVE_MS = 2000;
let timer = null;
let generation = 0;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "targets" && parts[1]) {
    return { nav: "overview", render: () => targetView(decodeURIComponent(parts[1]), params) };
  }
  if (parts[0] === "jobs") { return { nav: "jobs", render: () => jobs(params, load) }; }
  if (parts[0] === "audit") { return { nav: "audit", render: () => audit(params) }; }
  if (parts[0] === "storage") { return { nav: "storage", render: () => storage() }; }
  return { nav: "overview", render: () => overview() };
}

// Render the view the URL names. Only a view that loaded replaces the one on screen;
// a view that has running jobs is fetched again while it is shown.
async function load() {
  clearTimeout(timer);
  if (!token()) { return; }
  const mine = ++generation;
  const { nav, render } = route();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) { a.setAttribute("aria-current", "page"); }
    else { a.removeAttribute("aria-current"); }
  }
  try {
    const view = await render();
    if (mine !== generation) { return; }
    const shown = $("view").firstElementChild;
    // Unchanged data is not drawn again (an open select or a focused button stays put).
    if (!(view.signature && shown && shown.signature === view.signature)) {
      const focused = document.activeElement && document.activeElement.id;
      $("view").replaceChildren(view);
      if (focused && $(focused) && $(focused).tagName !== "BUTTON") { $(focused).focus(); }
    }
    loaded();
    if (view.live) { timer = setTimeout(load, LIVE_MS); }
  } catch (e) {
    problem(e, "load");
    // A live view that could not be fetched keeps trying, more slowly, and stays on screen.
    if (token() && $("view").firstElementChild?.live) { timer = setTimeout(load, LIVE_MS * 3); }
  }
}

// `why`: shown on the sign-in form when the server refused the token (expired, forged…).
function show(signedIn, why) {
  $("login").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("nav").hidden = !signedIn;
  $("login-error").textContent = why || "";
  if (signedIn) {
    clearNotices();
    load();
  } else {
    clearTimeout(timer);
    $("token").focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setRefresh(load);
  onSignedOut((why) => show(false, why));
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) { return; }
    setToken(value);
    $("token").value = "";
    show(true);
  });
  $("logout").addEventListener("click", () => { clearToken(); show(false); });
  window.addEventListener("hashchange", () => {
    clearNotices();
    // A finished job's panel stays until the operator moves on; a running one stays.
    if (!["queued", "running"].includes($("job").dataset.status)) { $("job").hidden = true; }
    load();
  });
  wireRestoreDialog();
  show(Boolean(token()));
});
