// pgkeep console: API keys (#/keys), for an OWNER token or a key with keys:manage. Lists
// keys (never a secret), mints one (its secret shown in the next view only, with a copy
// button) and revokes one after a confirmation. A key mints only subsets of itself: the
// API refuses otherwise, and its words are shown.

import { api } from "./api.js";
import { fail, problem, refresh, say } from "./shell.js";
import { badge, cell, el, section, table, when } from "./ui.js";

export const SCOPES = ["backups:read", "backups:download", "backups:create", "backups:verify",
  "backups:restore", "backups:delete", "backups:pin", "audit:read", "keys:manage"];
let fresh = null;  // the key just minted: drawn once, then forgotten

function stateOf(k) {
  if (k.revokedAt) { return "revoked"; }
  if (k.expiresAt && new Date(k.expiresAt).getTime() <= Date.now()) { return "expired"; }
  return "active";
}

async function revoke(k) {
  if (!window.confirm(`Revoke the API key ${k.name} (${k.id})? Whatever uses it is refused ` +
    "from its next request on. This cannot be undone.")) { return; }
  try {
    await api("DELETE", `/api/keys/${encodeURIComponent(k.id)}`);
    say(`Revoked the API key ${k.name} (${k.id}).`);
    await refresh();
  } catch (e) { problem(e); }
}

function keyRow(k) {
  const state = stateOf(k);
  return el("tr", { dataset: { key: k.id, name: k.name, state } },
    el("th", { scope: "row" }, k.name, el("span", { className: "reason" }, k.id)),
    cell("Scopes", el("ul", { className: "labels", aria: { label: `Scopes of ${k.name}` } },
      k.scopes.map((s) => el("li", { className: "badge muted" }, s)))),
    cell("Targets", k.targets ? k.targets.join(", ") : "every target"),
    cell("Created", when(k.createdAt)),
    cell("Expires", k.expiresAt ? when(k.expiresAt) : "never"),
    cell("Last used", k.lastUsedAt ? when(k.lastUsedAt) : "never"),
    cell("State", badge(state, { active: "ok", revoked: "bad", expired: "muted" }[state]),
      k.revokedAt ? el("span", { className: "reason" }, "revoked ", when(k.revokedAt)) : ""),
    cell(null, state === "active" ? el("button", { type: "button", className: "danger",
      aria: { label: `Revoke ${k.name}` }, on: { click: () => revoke(k) } }, "Revoke") : ""));
}

function copy(input) {
  const done = () => say("The key is on the clipboard.");
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, () => fail("Copy it by hand: the clipboard refused."));
  } else {
    input.select();
    if (document.execCommand("copy")) { done(); } else { fail("Copy it by hand: the clipboard refused."); }
  }
}

function secret(minted) {
  const input = el("input", { id: "new-key", readOnly: true, value: minted.key, className: "secret",
    autocomplete: "off", spellcheck: false });
  const panel = el("section", { className: "panel secret-panel", dataset: { secret: minted.id },
    aria: { labelledby: "new-key-title" } },
  el("h3", { id: "new-key-title" }, `New key ${minted.name}`),
  el("p", { className: "warn-text", role: "note" }, "Copy this key now: it is shown once and will not ",
    "be shown again (pgkeep keeps only its hash). Send it as ", el("code", {}, "Authorization: Bearer …"),
    ", never in a URL."),
  el("label", { htmlFor: "new-key" }, "The new key"), input,
  el("div", { className: "buttons" },
    el("button", { type: "button", on: { click: () => copy(input) } }, "Copy key"),
    el("button", { type: "button", className: "secondary", on: { click: () => panel.remove() } }, "Done")));
  return panel;
}

function createForm() {
  const error = el("p", { className: "error", role: "alert", id: "key-error" });
  const submit = async (event) => {
    event.preventDefault();
    const f = event.target.elements;
    const body = { name: f["key-name"].value.trim(),
      scopes: [...event.target.querySelectorAll("input[name=scope]:checked")].map((i) => i.value) };
    const targets = f["key-targets"].value.split(",").map((t) => t.trim()).filter(Boolean);
    if (targets.length) { body.targets = targets; }
    if (f["key-expires"].value.trim()) { body.expiresIn = f["key-expires"].value.trim(); }
    try {
      fresh = await api("POST", "/api/keys", body);
    } catch (e) {
      if (e.status) { error.textContent = e.message; return; }  // the API's error and details
      problem(e);
      return;
    }
    say(`Created the API key ${fresh.name} (${fresh.id}).`);
    await refresh().catch(problem);
  };
  const field = (id, label, props) => el("div", { className: "field" },
    el("label", { htmlFor: id }, label), el("input", { id, name: id, autocomplete: "off", ...props }));
  return el("form", { className: "key-form", on: { submit } },
    el("div", { className: "filters" },
      field("key-name", "Key name", { required: true, maxLength: 64, placeholder: "ci-shop" }),
      field("key-targets", "Targets (comma-separated; empty: every target)", { placeholder: "shop" }),
      field("key-expires", "Expires in", { value: "90d", maxLength: 20, placeholder: "90d, 12h or never" })),
    el("fieldset", { className: "scopes" }, el("legend", {}, "Scopes"),
      SCOPES.map((s) => el("label", { className: "check" },
        el("input", { type: "checkbox", name: "scope", value: s }), s))),
    el("p", { className: "hint" }, "A key can mint only keys with a subset of its own scopes and ",
      "targets, expiring no later than itself."),
    error,
    el("button", { type: "submit" }, "Create key"));
}

export async function keysView() {
  const data = await api("GET", "/api/keys");
  const shown = fresh;
  fresh = null;
  const keys = data.keys || [];
  return el("div", { dataset: { view: "keys" } },
    el("h2", {}, "API keys"),
    shown ? secret(shown) : "",
    section("New key", createForm()),
    section(`Keys (${keys.length})`,
      keys.length ? table("API keys: never their secrets",
        ["Key", "Scopes", "Targets", "Created", "Expires", "Last used", "State", ""],
        keys.map(keyRow), "keys") : el("p", {}, "No API keys yet.")));
}
