// pgkeep console: the fleet views (overview, jobs, audit, storage). Each fetches first and
// only then replaces what is on screen, so a failed request leaves the last view standing.

import { api, query } from "./api.js";
import { canCancel } from "./access.js";
import { cancel } from "./actions.js";
import {
  DASH, badge, bytes, cell, duration, el, filename, section, select, sparkline, table, utc, when,
} from "./ui.js";

export function link(target) {
  return el("a", { href: `#/targets/${encodeURIComponent(target)}` }, target);
}

export function statusOf(t) {
  if (t.status) { return t.status; }
  if (t.gone) { return "gone"; }
  if (t.reachable === false) { return "unreachable"; }
  return "unknown";
}

function downStores(t) {
  return (t.stores || []).filter((s) => s.ok === false);
}

function storesDown(t) {
  return downStores(t).map((s) => el("span", { className: "reason bad-text" },
    `store ${s.store} down: ${s.error || "not answering"}`));
}

function totals(data) {
  const t = data.totals;
  if (!t) { return el("p", { className: "muted" }, `${data.count ?? DASH} targets`); }
  const stat = (label, value, tone) => el("div", { className: `stat ${tone || ""}`, dataset: { total: label } },
    el("dt", {}, label), el("dd", {}, String(value ?? DASH)));
  const stores = Object.entries(t.bytes || {}).map(([store, n]) => stat(`${store} store`, bytes(n)));
  return el("dl", { className: "totals", aria: { label: "Fleet totals" } },
    stat("targets", t.targets),
    stat("failing", t.failing, t.failing ? "bad" : ""),
    stat("stale", t.stale, t.stale ? "warn" : ""),
    stat("unreachable", t.unreachable, t.unreachable ? "bad" : ""),
    stat("gone", t.gone),
    stat("backups", t.backups),
    ...stores);
}

function failure(f) {
  if (!f) { return DASH; }
  return el("div", { className: "failure" },
    el("span", { className: "cause" }, f.cause || DASH),
    el("span", { className: "reason" }, `${f.kind || "job"} `, when(f.at),
      f.jobId ? " · " : "", f.jobId ? el("a", { href: `#/jobs?job=${encodeURIComponent(f.jobId)}` }, "job") : ""));
}

function testRestore(r) {
  if (!r) { return el("span", { className: "muted" }, "never"); }
  const verdict = r.verdict || (r.ok ? "restored" : "failed");
  return el("div", { dataset: { testRestore: verdict } },
    badge(verdict, r.ok ? "ok" : "bad"), " ", when(r.at),
    r.filename ? el("span", { className: "reason" }, filename(r.filename)) : "");
}

function targetRow(t) {
  const status = statusOf(t);
  const last = t.lastBackup;
  return el("tr", { dataset: { target: t.name, status } },
    el("th", { scope: "row" }, link(t.name),
      el("span", { className: "reason" }, t.kind === "globals" ? "globals of " : `${t.database ?? DASH} on `,
        el("span", { className: "nowrap" }, t.server ?? DASH))),
    cell("Status", badge(status), ...storesDown(t)),
    cell("Last good backup", last ? when(last.created) : el("span", { className: "muted" }, "none yet"),
      last ? el("span", { className: "reason" }, bytes(last.sizeBytes)) : ""),
    cell("Last failure", failure(t.lastFailure)),
    cell("Last test restore", testRestore(t.lastTestRestore)),
    cell("Next run", t.nextRun ? el("span", { className: "nowrap", title: `cron ${t.schedule || ""} (UTC)` }, utc(t.nextRun)) : "not scheduled"),
    cell("Backups", el("span", { className: "nowrap" }, `${t.count ?? DASH} · ${bytes(t.sizeBytes)}`)),
    cell("Trend", sparkline(t.trend, `Size of ${t.name}'s recent backups`)));
}

export async function overview() {
  const data = await api("GET", "/api/backup/targets");
  const rows = data.targets.map(targetRow);
  return el("div", { dataset: { view: "overview" } },
    el("h2", {}, "Fleet"),
    totals(data),
    table("Every target: status, last good backup, last failure, last test restore",
      ["Target", "Status", "Last good backup", "Last failure", "Last test restore",
        "Next run (UTC)", "Backups", "Trend"], rows, "targets"),
    rows.length ? "" : el("p", {}, "No targets configured."));
}

// Jobs: filterable, running ones refreshed while shown.
const JOB_STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const JOB_KINDS = ["", "create", "verify", "restore"];

function jobRow(j, go, focus) {
  const live = ["queued", "running"].includes(j.status);
  const p = j.progress || {};
  const what = j.status === "failed"
    ? el("span", { className: "cause" }, `${j.error || ""}${j.details ? `: ${j.details}` : ""}`)
    : live ? `${((p.bytesWritten || 0) / 1048576).toFixed(1)} MB${p.percent ? ` · ${Math.round(p.percent)}%` : ""}`
      : "";
  const took = j.finishedAt ? duration(new Date(j.finishedAt) - new Date(j.startedAt)) : DASH;
  return el("tr", { dataset: { job: j.id, status: j.status }, className: focus === j.id ? "focus" : "" },
    cell("Kind", j.kind),
    cell("Status", badge(j.status)),
    cell("Target", j.target ? link(j.target) : DASH),
    cell("Backup", j.filename && j.target
      ? el("a", { href: `#/targets/${encodeURIComponent(j.target)}?backup=${encodeURIComponent(j.filename)}` },
        filename(j.filename))
      : (j.filename ? filename(j.filename) : DASH)),
    cell("Started", when(j.startedAt)),
    cell("Took", el("span", { className: "nowrap" }, took)),
    cell("By", j.createdBy || DASH),
    cell(what ? "Progress or cause" : null, what),
    cell(null, live && canCancel(j.kind) ? el("button", { type: "button", className: "secondary",
      aria: { label: `Cancel job ${j.id}` }, on: { click: () => cancel(j.id).then(go) } }, "Cancel") : ""));
}

export async function jobs(params, go) {
  const status = params.get("status") || "";
  const kind = params.get("kind") || "";
  const data = await api("GET", query("/api/backup/jobs", { status, kind }));
  const set = (key) => (e) => {
    params.set(key, e.target.value);
    location.hash = `#/jobs?${params}`;
  };
  const list = data.jobs.filter((j) => (!status || j.status === status) && (!kind || j.kind === kind));
  const root = el("div", { dataset: { view: "jobs" } },
    el("h2", {}, "Jobs"),
    el("div", { className: "filters" },
      select("job-status", "Status", JOB_STATUSES.map((s) => [s, s || "any"]), status, set("status")),
      select("job-kind", "Kind", JOB_KINDS.map((k) => [k, k || "any"]), kind, set("kind"))),
    table("Jobs across targets and instances, newest first",
      ["Kind", "Status", "Target", "Backup", "Started", "Took", "By", "Progress or cause", ""],
      list.map((j) => jobRow(j, go, params.get("job"))), "jobs"),
    list.length ? "" : el("p", {}, "No jobs match."));
  // Kept current while shown: a job started elsewhere (the CLI, the scheduler) appears.
  root.live = true;
  root.signature = JSON.stringify(list);
  return root;
}

// Audit: a page at a time (`limit` in the URL, 50 by default), filtered by action, target
// and who, with the chain's result.
const PAGE = 50;

function chain(data) {
  const c = data.chain;
  if (!c) { return el("p", { className: "muted", dataset: { chain: "unknown" } }, `Chain: ${DASH}`); }
  return el("div", { className: "chain", dataset: { chain: c.ok ? "ok" : "broken" } },
    el("p", {}, "Chain: ", badge(c.ok ? "intact" : "broken"), " ", c.details || ""),
    (c.notes || []).length ? el("ul", { className: "reason" }, c.notes.map((n) => el("li", {}, n))) : "");
}

function auditRow(e) {
  return el("tr", { dataset: { action: e.action || "" } },
    cell("When", when(e.at)),
    cell("Action", e.action || DASH),
    cell("Target", e.target ? link(e.target) : DASH),
    cell("Backup", e.backup ? filename(e.backup) : DASH),
    cell("Who", `${e.who || DASH}${e.via ? ` via ${e.via}` : ""}`),
    cell("Result", badge(e.result || DASH),
      e.error ? el("span", { className: "reason" }, e.error) : ""));
}

export async function audit(params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const limit = Math.min(1000, Math.max(1, Number(params.get("limit")) || PAGE));
  const filters = { action: params.get("action") || "", target: params.get("target") || "",
    actor: params.get("actor") || "" };
  const data = await api("GET", query("/api/backup/audit", { offset, limit, ...filters }));
  const entries = data.entries || [];
  const form = el("form", { className: "filters", on: { submit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const key of Object.keys(filters)) {
      const v = e.target.elements[key].value.trim();
      if (v) { q.set(key, v); }
    }
    location.hash = `#/audit?${q}`;
  } } },
  ...Object.keys(filters).map((key) => el("div", { className: "field" },
    el("label", { htmlFor: `audit-${key}` }, key === "actor" ? "Who" : key[0].toUpperCase() + key.slice(1)),
    el("input", { id: `audit-${key}`, name: key, value: filters[key], autocomplete: "off" }))),
  el("button", { type: "submit" }, "Filter"));
  const page = (to) => {
    params.set("offset", String(Math.max(0, to)));
    location.hash = `#/audit?${params}`;
  };
  const total = data.total ?? entries.length;
  return el("div", { dataset: { view: "audit" } },
    el("h2", {}, "Audit trail"),
    chain(data),
    form,
    table("Audit entries, newest first", ["When", "Action", "Target", "Backup", "Who", "Result"],
      entries.map(auditRow), "audit"),
    el("nav", { className: "pager", aria: { label: "Audit pages" } },
      el("button", { type: "button", className: "secondary", disabled: offset === 0,
        on: { click: () => page(offset - limit) } }, "Newer"),
      el("span", {}, total ? `${offset + 1}–${offset + entries.length} of ${total}` : "No entries"),
      el("button", { type: "button", className: "secondary", disabled: offset + entries.length >= total,
        on: { click: () => page(offset + limit) } }, "Older")));
}

// Storage: per store, bytes per target, copy status and what is missing.
function store(s) {
  // What a store that cannot be read holds is unknown, not zero.
  const rows = (s.targets || []).map((t) => el("tr", { dataset: { target: t.target } },
    cell("Target", link(t.target)), cell("Backups", t.ok === false ? DASH : String(t.backups ?? DASH)),
    cell("Bytes", el("span", { className: "nowrap" }, t.ok === false ? DASH : bytes(t.bytes))),
    cell("Readable", t.ok === false ? badge("down", "bad") : badge("ok"),
      t.error ? el("span", { className: "reason bad-text" }, t.error) : "")));
  const missing = s.missing || [];
  return el("section", { className: "panel store", dataset: { store: s.name, ok: String(s.ok !== false) },
    aria: { label: `Store ${s.name}` } },
  el("h3", {}, `${s.name} `, badge(s.ok === false ? "down" : "ok", s.ok === false ? "bad" : "ok")),
  el("p", {}, `${s.kind || DASH}, ${s.role || DASH} store · `, s.ok === false
    ? "cannot be read now"
    : `${s.backups ?? DASH} backup${s.backups === 1 ? "" : "s"} · ${bytes(s.bytes)}`),
  s.error ? el("p", { className: "cause" }, s.error) : "",
  rows.length ? table(`Bytes per target in ${s.name}`, ["Target", "Backups", "Bytes", "Readable"], rows) : "",
  s.role === "copy" ? el("p", {}, s.ok === false ? "Which backups it lacks is unknown while it is down."
    : missing.length
    ? `${missing.length} backups missing from this copy store:`
    : "Every backup has its copy here.") : "",
  missing.length ? el("ul", { className: "missing" }, missing.map((m) => el("li", {},
    link(m.target), " ", filename(m.filename)))) : "");
}

export async function storage() {
  const data = await api("GET", "/api/backup/storage");
  return el("div", { dataset: { view: "storage" } },
    el("h2", {}, "Storage"),
    el("div", { className: "stores" }, (data.stores || []).map(store)),
    (data.stores || []).length ? "" : section("No stores", el("p", {}, DASH)));
}
