// pgkeep console: one target: its backups newest first with every fact the list gives,
// its schedule, retention policy and preview, a chart of size and duration, and its actions.

import { api, query, SignedOut } from "./api.js";
import { can } from "./access.js";
import * as act from "./actions.js";
import { drift, verification, verificationCell } from "./badges.js";
import { editLabels } from "./labels.js";
import { restoreTables } from "./tables.js";
import {
  DASH, badge, bytes, cell, duration, el, filename, section, select, sizeChart, table, utc, when,
} from "./ui.js";
import { statusOf } from "./views.js";

function copies(b) {
  const list = b.copies || [];
  if (!list.length) { return DASH; }
  return el("ul", { className: "copies" }, list.map((c) => {
    const state = c.present === null || c.present === undefined ? "unknown"
      : !c.present ? "missing" : c.verified ? "checked" : "present";
    return el("li", { dataset: { store: c.store, copy: state } },
      `${c.store}: `, badge(state, { checked: "ok", present: "info", missing: "bad", unknown: "warn" }[state]));
  }));
}

function encryption(b) {
  if (!b.encrypted) { return "none"; }
  return el("span", { className: "badge", title: `age, to ${(b.recipients || []).join(", ")}` }, "encrypted");
}

// Only what the credential's scopes allow, and only what the API would do (no restore of
// a globals backup or of one this service did not sign).
function actions(target, b) {
  const btn = (text, label, fn, cls) => el("button", { type: "button", className: cls || "secondary",
    aria: { label: `${label} ${b.filename}` }, on: { click: fn } }, text);
  const restorable = b.kind !== "globals" && b.signed !== false;
  const offered = [
    can("backups:download") && btn("Download", "Download", () => act.download(target, b.filename)),
    can("backups:verify") && btn("Verify", "Verify", () => act.verify(target, b.filename, false)),
    can("backups:verify") && b.kind !== "globals"
      && btn("Test restore", "Verify with a test restore", () => act.verify(target, b.filename, true)),
    can("backups:restore") && restorable && btn("Restore", "Restore", () => act.restore(target, b)),
    can("backups:restore") && restorable
      && btn("Restore tables", "Restore tables of", () => restoreTables(target, b)),
    can("backups:pin") && btn(b.pinned ? "Unpin" : "Pin", b.pinned ? "Unpin" : "Pin",
      () => act.pin(target, b.filename, b.pinned)),
    can("backups:pin") && b.signed !== false && btn("Labels", "Edit labels of", () => editLabels(target, b)),
    can("backups:delete") && !b.pinned && btn("Delete", "Delete", () => act.remove(target, b), "danger"),
  ].filter(Boolean);
  return cell(offered.length ? "Actions" : null, offered.length
    ? el("div", { className: "actions" }, offered) : el("span", { className: "muted" }, "view only"));
}

function labels(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) { return ""; }
  return el("ul", { className: "labels", aria: { label: "Labels" } },
    entries.map(([k, v]) => el("li", { className: "badge muted" }, `${k}=${v}`)));
}

function backupRow(target, b, focus) {
  const format = b.format === "custom" ? "custom" : `plain, ${b.compression || DASH}`;
  return el("tr", { dataset: { backup: b.filename, verified: verification(b).state },
    className: focus === b.filename ? "focus" : "" },
  el("th", { scope: "row" }, filename(b.filename), b.kind === "globals" ? badge("globals", "muted") : "",
    labels(b.labels), drift(b)),
  cell("Created", when(b.created)),
  cell("Size", el("span", { className: "nowrap" },
    bytes(b.sizeBytes ?? null) === DASH ? (b.size || DASH) : bytes(b.sizeBytes))),
  cell("Took", el("span", { className: "nowrap" }, duration(b.durationMs))),
  cell("Format", format),
  cell("Encryption", encryption(b)),
  cell("Copies", copies(b)),
  cell("Pin", b.pinned ? badge("pinned", "info") : DASH),
  verificationCell(b),
  actions(target, b));
}

function policyList(policy) {
  const words = { maxAgeDays: "max age (days)", keepLast: "keep last", keepDaily: "keep daily",
    keepWeekly: "keep weekly", keepMonthly: "keep monthly", keepYearly: "keep yearly", minKeep: "keep at least" };
  const set = Object.entries(policy || {}).filter(([, v]) => v !== null && v !== undefined);
  if (!set.length) { return el("p", {}, "No retention policy: every backup is kept."); }
  return el("dl", { className: "facts" }, set.map(([k, v]) => [el("dt", {}, words[k] || k), el("dd", {}, String(v))]));
}

function preview(data) {
  if (!data) { return el("p", { className: "muted" }, `Preview: ${DASH}`); }
  const doomed = data.delete || [];
  if (!doomed.length) { return el("p", {}, "The next cleanup deletes nothing."); }
  return el("div", {}, el("p", {}, `The next cleanup would delete ${doomed.length}:`),
    el("ul", { className: "doomed" }, doomed.map((d) => el("li", {}, filename(d.filename), " — ",
      (d.reasons || []).join("; ") || DASH))));
}

function createForm(target, kind) {
  const submit = (e) => {
    e.preventDefault();
    const body = {};
    const f = e.target.elements;
    if (f.format && f.format.value) { body.format = f.format.value; }
    if (f.compression && f.compression.value) { body.compression = f.compression.value; }
    act.create(target, body);
  };
  return el("form", { className: "filters create", on: { submit } },
    kind === "globals" ? "" : select("format", "Format",
      [["", "default"], ["plain", "plain SQL"], ["custom", "custom archive"]], ""),
    select("compression", "Compression",
      [["", "default"], ["none", "none"], ["gzip", "gzip"], ["zstd", "zstd"]], ""),
    el("button", { type: "submit", id: "create" }, "Create backup"));
}

async function optional(path) {
  try { return await api("GET", path); } catch (e) {
    if (e instanceof SignedOut) { throw e; }
    return null;
  }
}

export async function targetView(name, params) {
  const targets = await api("GET", "/api/backup/targets");
  const t = targets.targets.find((x) => x.name === name);
  if (!t) { throw new Error(`no target '${name}'`); }
  const [list, plan] = await Promise.all([
    api("GET", query("/api/backup/list", { target: name })).catch((e) => e),
    optional(query("/api/backup/retention/preview", { target: name })),
  ]);
  const backups = list instanceof Error ? null : list.backups;
  if (list instanceof SignedOut) { throw list; }
  const status = statusOf(t);
  const down = (t.stores || []).filter((s) => s.ok === false);
  const trend = t.trend || (backups || []).slice().reverse()
    .map((b) => ({ created: b.created, sizeBytes: b.sizeBytes, durationMs: b.durationMs ?? null }));
  const focus = params.get("backup");
  return el("div", { dataset: { view: "target", target: name, status } },
    el("p", { className: "crumbs" }, el("a", { href: "#/" }, "Overview"), " / ", name),
    el("h2", {}, `${name} `, badge(status)),
    el("p", {}, t.kind === "globals" ? `Globals of ${t.server}` : `${t.database ?? DASH} on ${t.server ?? DASH}`),
    down.map((s) => el("p", { className: "cause", dataset: { storeDown: s.store } },
      `Store ${s.store} is down: ${s.error || "not answering"}`)),
    t.lastFailure ? el("p", { className: "cause" }, `Last failure (${t.lastFailure.kind}): `,
      t.lastFailure.cause || DASH, " · ", when(t.lastFailure.at)) : "",
    el("div", { className: "split" },
      section("Schedule",
        el("dl", { className: "facts" },
          el("dt", {}, "cron (UTC)"), el("dd", {}, t.schedule || "not scheduled"),
          el("dt", {}, "next run"), el("dd", {}, utc(t.nextRun)),
          el("dt", {}, "stale after"), el("dd", {}, t.staleAfter ? duration(t.staleAfter * 1000) : DASH)),
        t.gone ? el("p", { className: "reason", dataset: { gone: "" } },
          "Its database is gone: nothing new is backed up. These backups stay until deleted.")
          : can("backups:create") ? createForm(name, t.kind) : ""),
      section("Retention", policyList(t.retention || plan?.policy), preview(plan)),
      section("Size and duration", sizeChart(trend))),
    section(`Backups (${backups ? backups.length : DASH})`,
      backups === null
        ? el("p", { className: "cause" }, `Backups cannot be listed: ${list.message}`)
        : backups.length === 0 ? "" : table(`Backups of ${name}, newest first`,
          ["Backup", "Created", "Size", "Took", "Format", "Encryption", "Copies", "Pin", "Verification", "Actions"],
          backups.map((b) => backupRow(name, b, focus)), "backups"),
      backups && !backups.length
        ? el("p", {}, can("backups:create") ? "No backups yet. Create one above." : "No backups yet.") : ""));
}
