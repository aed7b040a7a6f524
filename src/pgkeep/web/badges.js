// pgkeep console: what a backup's row says about it, never more than the API does: its
// verification (test-restored, checksum only, failed, inconclusive naming what is missing,
// never), its upgrade rehearsals per major, and drift from the backup before it.

import { DASH, badge, cell, el, filename, when } from "./ui.js";

// The verification state, never more than the API says: a verify that passed without a
// test restore is "checksum", whatever the old `verified` flag suggests.
export function verification(b) {
  const v = b.verification;
  if (v && v.state) { return v; }
  if (b.verified === false) { return { state: "failed", at: b.verifiedAt, details: b.verifyProblem }; }
  if (b.verified === true) { return { state: "checksum", at: b.verifiedAt }; }
  return { state: "none" };
}

// `details` may be a sentence or a list of what is missing (extensions, roles, …).
function missing(details) {
  if (Array.isArray(details)) { return details.map((d) => (typeof d === "string" ? d : JSON.stringify(d))).join("; "); }
  if (details && typeof details === "object") {
    return Object.entries(details).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`).join("; ");
  }
  return details || "";
}

function state(v) {
  if (v.state === "restored") {
    return [badge("test-restored", "ok"), " ", when(v.at),
      v.rowsProven !== undefined && v.rowsProven !== null
        ? el("span", { className: "reason" }, `${v.rowsProven} rows proven`) : ""];
  }
  if (v.state === "checksum") { return [badge("checksum only", "info"), " ", when(v.at)]; }
  if (v.state === "failed") {
    return [badge("failed", "bad"), " ", when(v.at),
      el("span", { className: "reason bad-text" },
        [v.check, v.details].filter(Boolean).join(": ") || DASH, v.source ? ` (from ${v.source})` : "")];
  }
  if (v.state === "inconclusive") {
    // The verify server lacked something the backup needs: the backup is not blamed.
    const what = [v.check, missing(v.details)].filter(Boolean).join(": ");
    return [badge("inconclusive", "warn"), " ", when(v.at),
      el("span", { className: "reason warn-text", dataset: { missing: what } },
        `Not proven, not failed: ${what || "the verify server lacks what it needs"}`)];
  }
  return [badge("never verified", "muted")];
}

// One line per major the backup was rehearsed into: restored there, or the first error.
function rehearsals(list) {
  if (!Array.isArray(list) || !list.length) { return ""; }
  return el("ul", { className: "rehearsals", aria: { label: "Upgrade rehearsals" } }, list.map((r) =>
    el("li", { dataset: { rehearsal: String(r.major ?? ""), ok: String(Boolean(r.ok)) } },
      `PostgreSQL ${r.major ?? "?"}: `, badge(r.ok ? "restores" : "fails", r.ok ? "ok" : "bad"),
      r.details || r.server ? el("span", { className: `reason${r.ok ? "" : " bad-text"}` },
        [r.details, r.server ? `on ${r.server}` : ""].filter(Boolean).join(" ")) : "")));
}

export function verificationCell(b) {
  const v = verification(b);
  return cell("Verification", ...state(v), rehearsals(v.rehearsals || b.rehearsals),
    b.signed === false ? el("span", { className: "reason" }, `${b.trust}: never restored`) : "");
}

// Much less than the backup before it (that one is pinned): which tables, how many rows.
export function drift(b) {
  const d = b.drift;
  if (!d) { return ""; }
  const reasons = (d.reasons || []).join("; ") || DASH;
  return el("div", { className: "drift", dataset: { drift: d.previous || "" } },
    badge("drift", "warn"),
    el("span", { className: "reason warn-text" }, "Much less than ", filename(d.previous), ": ", reasons));
}
