// pgkeep console: sign-in (an OWNER token or an API key) and the hash router. Plain
// JavaScript modules against the pgkeep API; no build step, no CDN. Views: #/ (overview),
// #/targets/NAME, #/jobs, #/audit, #/storage, #/keys.

import { SignedOut, clearToken, onSignedOut, setToken, token } from "./api.js";
import { can, denied, describe, forget, learn } from "./access.js";
import { wireRestoreDialog } from "./actions.js";
import { keysView } from "./keys.js";
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
  if (parts[0] === "keys") { return { nav: "keys", render: () => keysView() }; }
  return { nav: "overview", render: () => overview() };
}

// Render the view the URL names. Only a view that loaded replaces the one on screen;
// a view that has running jobs is fetched again while it is shown.
async function load() {
  clearTimeout(timer);
  if (!token()) { return; }
  const mine = ++generation;
  const { nav, render: wanted } = route();
  // A view the credential cannot read is not asked for: it is told why instead.
  const render = can(NEEDS[nav]) ? wanted : async () => denied(NEEDS[nav]);
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

// Views the credential cannot read are not offered (the API would answer 403).
const NEEDS = { overview: "backups:read", jobs: "backups:read", storage: "backups:read",
  audit: "audit:read", keys: "keys:manage" };

// `why`: shown on the sign-in form when the server refused the token (expired, revoked…).
function show(signedIn, why) {
  $("login").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("nav").hidden = !signedIn;
  $("login-error").textContent = why || "";
  $("whoami").textContent = signedIn ? `Signed in as ${describe()}` : "";
  for (const a of document.querySelectorAll("[data-nav]")) { a.hidden = !can(NEEDS[a.dataset.nav]); }
  if (signedIn) {
    clearNotices();
    load();
  } else {
    clearTimeout(timer);
    forget();
    $("token").focus();
  }
}

// What the credential may do comes first; a refused one is back at the sign-in form with
// the server's reason (the 401 listener shows it).
async function signIn() {
  try {
    await learn();
  } catch (e) {
    if (!(e instanceof SignedOut)) {
      clearToken();
      show(false, `Cannot sign in: ${e.message}`);
    }
    return;
  }
  show(true);
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
    signIn();
  });
  $("logout").addEventListener("click", () => { clearToken(); show(false); });
  window.addEventListener("hashchange", () => {
    clearNotices();
    // A finished job's panel stays until the operator moves on; a running one stays.
    if (!["queued", "running"].includes($("job").dataset.status)) { $("job").hidden = true; }
    load();
  });
  wireRestoreDialog();
  if (token()) { signIn(); } else { show(false); }
});
