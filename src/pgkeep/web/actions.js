// pgkeep console: what an operator can do. Create, verify and restore start a job
// (`?async=true`) that is followed live through its events, with a cancel button;
// pin and delete answer at once.

import { api, query, watch } from "./api.js";
import { $, bytes } from "./ui.js";
import { fail, problem, refresh, say } from "./shell.js";

const KIND = { create: "Backing up", verify: "Verifying", restore: "Restoring" };
let running = null;

function describe(job) {
  const p = job.progress || {};
  const mb = ((p.bytesWritten || 0) / 1048576).toFixed(1);
  const tables = p.tablesTotal ? ` · ${p.tablesDone}/${p.tablesTotal} tables` : "";
  const eta = job.status === "running" && p.etaSeconds !== null && p.etaSeconds !== undefined
    ? ` · about ${Math.ceil(p.etaSeconds)} s left` : "";
  return `${job.status} · ${mb} MB${tables}${eta}`;
}

function show(job) {
  const box = $("job");
  box.hidden = false;
  box.dataset.job = job.id;
  box.dataset.status = job.status;
  $("progress-label").textContent =
    `${KIND[job.kind] || job.kind} ${job.filename || ""} on ${job.target || "?"}`;
  $("progress").value = job.status === "succeeded" ? 100 : (job.progress?.percent || 0);
  $("progress-text").textContent = describe(job);
  $("cancel").hidden = !["queued", "running"].includes(job.status);
}

// The job to its end, live; then what happened, in the server's words.
export async function follow(job, done) {
  running = job;
  $("job-result").replaceChildren();
  show(job);
  let last = job;
  try {
    last = await watch(job, show);
    show(last);
  } catch (e) { problem(e); }
  running = null;
  $("cancel").hidden = true;
  if (last.status === "succeeded") { say(done(last)); }
  else if (last.status === "cancelled") { say(`${KIND[last.kind] || last.kind} cancelled; nothing was kept.`); }
  else if (last.status === "failed") {
    fail(`${last.kind} failed: ${last.error || ""}${last.details ? ` (${last.details})` : ""}`);
  }
  await refresh().catch(problem);
  return last;
}

export async function cancel(id) {
  const which = id || running?.id;
  if (!which) { return; }
  try {
    await api("DELETE", `/api/backup/jobs/${encodeURIComponent(which)}`);
    await refresh();
  } catch (e) { problem(e); }
}

// `done(job)`: what to say once it succeeded (it may also fill the panel's result).
export async function start(path, body, done) {
  if (running) { fail("A job is already being followed here; wait for it or cancel it."); return; }
  try {
    const started = await api("POST", path, body);
    await follow(started.job, done);
  } catch (e) { problem(e); }
}

export function create(target, options) {
  const path = query("/api/backup/create", { async: "true", target });
  return start(path, options, (job) => `Backup ${job.filename} created.`);
}

export function backupPath(name, target, action) {
  return query(`/api/backup/${encodeURIComponent(name)}${action ? `/${action}` : ""}`,
    { async: action === "verify" || action === "restore" ? "true" : "", target });
}

export function verify(target, name, restore) {
  return start(backupPath(name, target, "verify"), { restore },
    () => `${name}: verify finished; its state is below.`);
}

export function restore(target, backup) {
  const dialog = $("restore-dialog");
  $("restore-what").textContent = backup.filename;
  $("restore-database").value = "";
  $("restore-replace").checked = false;
  $("restore-confirm").value = "";
  $("restore-confirm-box").hidden = true;
  dialog.dataset.target = target;
  dialog.dataset.backup = backup.filename;
  dialog.showModal();
}

function restoreReady() {
  const replace = $("restore-replace").checked;
  $("restore-confirm-box").hidden = !replace;
  const name = $("restore-database").value.trim();
  $("restore-go").disabled = !name || (replace && $("restore-confirm").value !== name);
}

function restoreSubmit(event) {
  event.preventDefault();
  const dialog = $("restore-dialog");
  const database = $("restore-database").value.trim();
  const replace = $("restore-replace").checked;
  if (!database || (replace && $("restore-confirm").value !== database)) { return; }
  dialog.close();
  const body = { targetDatabase: database };
  if (replace) { Object.assign(body, { replace: true, confirm: database }); }
  const name = dialog.dataset.backup;
  start(backupPath(name, dialog.dataset.target, "restore"), body,
    () => `Restored ${name} into ${database}; every table's rows match the manifest.`);
}

export function wireRestoreDialog() {
  for (const id of ["restore-database", "restore-replace", "restore-confirm"]) {
    $(id).addEventListener("input", restoreReady);
  }
  $("restore-form").addEventListener("submit", restoreSubmit);
  $("restore-close").addEventListener("click", () => $("restore-dialog").close());
  $("cancel").addEventListener("click", () => cancel());
  restoreReady();
}

export async function pin(target, name, pinned) {
  try {
    await api(pinned ? "DELETE" : "POST", query(`/api/backup/${encodeURIComponent(name)}/pin`, { target }));
    say(`${name} ${pinned ? "unpinned" : "pinned: retention keeps it and delete refuses it"}.`);
    await refresh();
  } catch (e) { problem(e); }
}

// Where the backup is held, from the list's `copies`: what a delete will remove it from.
export function holders(backup) {
  const copies = (backup.copies || []).filter((c) => c.present !== false).map((c) => `copy:${c.store}`);
  return ["primary", ...copies];
}

export async function remove(target, backup) {
  const where = holders(backup).join(", ");
  const size = bytes(backup.sizeBytes);
  if (!window.confirm(`Delete ${backup.filename} (${size}) from ${where}? This cannot be undone.`)) {
    return;
  }
  try {
    const done = await api("DELETE", backupPath(backup.filename, target, ""));
    say(`Deleted ${backup.filename} from ${(done.stores || ["primary"]).join(", ")}.`);
  } catch (e) {
    if (e.data && Array.isArray(e.data.stores)) {
      fail(`Partly deleted ${backup.filename}: removed from ${e.data.stores.join(", ") || "no store"}; ` +
        `${e.data.details || e.message}. Delete again to finish.`, true);
    } else { problem(e); }
  }
  await refresh().catch(problem);
}

export async function download(target, name) {
  try {
    const link = await api("POST", query(`/api/backup/download-link/${encodeURIComponent(name)}`, { target }));
    const a = document.createElement("a");
    a.href = link.url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    say(`Downloading ${name}.`);
  } catch (e) { problem(e); }
}
