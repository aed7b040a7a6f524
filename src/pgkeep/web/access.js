// pgkeep console: what the signed-in credential may do, from GET /api/keys/self (an OWNER
// token holds every scope and every target; an API key its own). The console offers only
// those actions; the API refuses the rest all the same.

import { api } from "./api.js";
import { el } from "./ui.js";

let self = null;

// Asked once per sign-in (and per page load): a refused credential signs out with the
// server's reason, before any view is drawn.
export async function learn() {
  self = await api("GET", "/api/keys/self");
  return self;
}

export function forget() { self = null; }

export function can(scope) {
  return Boolean(self && (self.scopes || []).includes(scope));
}

export function isOwner() { return Boolean(self && self.kind === "owner"); }

// The scope a job's cancel needs: the scope of its kind, as the API asks.
export function canCancel(kind) {
  return can({ create: "backups:create", verify: "backups:verify", restore: "backups:restore" }[kind]);
}

// "alice (OWNER token)", "ci-shop (API key: backups:read, backups:create; shop)"
export function describe() {
  if (!self) { return ""; }
  if (self.kind === "owner") { return `${self.name} (OWNER token)`; }
  const targets = self.targets ? self.targets.join(", ") : "every target";
  return `${self.name} (API key: ${(self.scopes || []).join(", ") || "no scopes"}; ${targets})`;
}

// In place of a view the credential cannot read: which scope it lacks, and where it may go.
export function denied(scope) {
  return el("div", { dataset: { view: "denied", scope } },
    el("h2", {}, "Not allowed"),
    el("p", {}, `Signed in as ${describe()}: this view needs the scope ${scope}.`),
    can("keys:manage") ? el("p", {}, el("a", { href: "#/keys" }, "API keys")) : "");
}
