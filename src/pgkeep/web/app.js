// pgkeep console: plain JavaScript against the pgkeep API; no build step, no CDN.
"use strict";

const KEY = "pgkeep.token";
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(KEY); }

function show(signedIn) {
  $("login").hidden = signedIn;
  $("console").hidden = !signedIn;
  if (signedIn) { refresh(); } else { $("token").focus(); }
}

function say(text) { $("message").textContent = text; $("error").textContent = ""; }
function fail(text) { $("error").textContent = text; $("message").textContent = ""; }

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    show(false);
  }
  if (!response.ok) {
    const details = data.details ? ` (${data.details})` : "";
    throw new Error(`${data.error || response.statusText}${details}`);
  }
  return data;
}

function cell(row, text, label, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (label) { td.dataset.label = label; }
  if (cls) { td.className = cls; }
  row.appendChild(td);
  return td;
}

function button(text, onClick, cls, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = cls || "secondary";
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function badge(backup) {
  const span = document.createElement("span");
  span.className = "badge";
  if (backup.verified === true) { span.textContent = "verified"; span.classList.add("ok"); }
  else if (backup.verified === false) { span.textContent = "failed"; span.classList.add("bad"); }
  else { span.textContent = backup.hasManifest ? "not verified" : "no manifest"; }
  return span;
}

async function refresh() {
  try {
    const data = await api("GET", "/api/backup/list");
    const body = $("backups").querySelector("tbody");
    body.replaceChildren();
    for (const b of data.backups) {
      const row = document.createElement("tr");
      row.dataset.filename = b.filename;
      cell(row, b.filename, null, "name");
      cell(row, b.size, "Size");
      cell(row, new Date(b.created).toLocaleString(), "Created");
      cell(row, b.format === "custom" ? "custom" : `plain, ${b.compression}`, "Format");
      cell(row, "", "Verified").appendChild(badge(b));
      const actions = cell(row, "", null, "actions");
      actions.append(
        button("Download", () => download(b.filename), "secondary", `Download ${b.filename}`),
        button("Verify", () => verify(b.filename), "secondary", `Verify ${b.filename}`),
        button("Restore", () => restore(b.filename), "secondary", `Restore ${b.filename}`),
        button("Delete", () => remove(b.filename), "danger", `Delete ${b.filename}`),
      );
      body.appendChild(row);
    }
    $("empty").hidden = data.count > 0;
    $("backups").hidden = data.count === 0;
  } catch (e) { fail(e.message); }
}

function describe(progress) {
  const mb = (progress.bytesWritten / 1048576).toFixed(1);
  const tables = progress.tablesTotal ? ` · ${progress.tablesDone}/${progress.tablesTotal} tables` : "";
  const eta = progress.etaSeconds != null ? ` · about ${Math.ceil(progress.etaSeconds)} s left` : "";
  return `${mb} MB${tables}${eta}`;
}

// Server-Sent Events read through fetch, so the token travels in a header, not the URL.
async function watch(job) {
  const response = await fetch(`/api/backup/jobs/${job.id}/events`, {
    headers: { Authorization: `Bearer ${token()}` },
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = job;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { return last; }
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").find((l) => l.startsWith("data: "));
      if (!data) { continue; }
      last = JSON.parse(data.slice(6));
      const p = last.progress;
      $("progress").value = last.status === "succeeded" ? 100 : (p.percent || 0);
      $("progress-text").textContent = describe(p);
    }
  }
}

let running = null;

async function create(event) {
  event.preventDefault();
  const body = {};
  if ($("format").value) { body.format = $("format").value; }
  if ($("compression").value) { body.compression = $("compression").value; }
  $("create").disabled = true;
  $("job").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = "starting…";
  say("");
  try {
    const started = await api("POST", "/api/backup/create?async=true", body);
    running = started.job;
    const job = await watch(running);
    if (job.status === "succeeded") { say(`Backup ${job.filename} created.`); }
    else if (job.status === "cancelled") { say("Backup cancelled; nothing was kept."); }
    else { fail(`Backup failed: ${job.error}${job.details ? ` (${job.details})` : ""}`); }
  } catch (e) { fail(e.message); }
  running = null;
  $("create").disabled = false;
  $("job").hidden = true;
  refresh();
}

async function cancel() {
  if (!running) { return; }
  try { await api("DELETE", `/api/backup/jobs/${running.id}`); } catch (e) { fail(e.message); }
}

async function download(name) {
  try {
    const link = await api("POST", `/api/backup/download-link/${encodeURIComponent(name)}`);
    const a = document.createElement("a");
    a.href = link.url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    say(`Downloading ${name}.`);
  } catch (e) { fail(e.message); }
}

async function verify(name) {
  say(`Verifying ${name}…`);
  try {
    const result = await api("POST", `/api/backup/${encodeURIComponent(name)}/verify`);
    const failed = result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.details}`);
    if (result.verified) { say(`${name} verified: ${result.checks.map((c) => c.name).join(", ")} ok.`); }
    else { fail(`${name} failed verification: ${failed.join("; ")}`); }
  } catch (e) { fail(e.message); }
  refresh();
}

async function restore(name) {
  const target = window.prompt(
    `Restore ${name} into a NEW database.\nType the name of the database to create:`);
  if (!target) { return; }
  say(`Restoring ${name} into ${target}…`);
  try {
    const result = await api("POST", `/api/backup/${encodeURIComponent(name)}/restore`,
      { targetDatabase: target });
    const rows = result.tables.reduce((n, t) => n + t.restoredRows, 0);
    say(`Restored into ${result.targetDatabase}: ${result.tables.length} tables, ${rows} rows, counts match.`);
  } catch (e) { fail(e.message); }
}

async function remove(name) {
  if (!window.confirm(`Delete ${name}? This cannot be undone.`)) { return; }
  try {
    await api("DELETE", `/api/backup/${encodeURIComponent(name)}`);
    say(`Deleted ${name}.`);
  } catch (e) { fail(e.message); }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    show(true);
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); show(false); });
  $("create-form").addEventListener("submit", create);
  $("cancel").addEventListener("click", cancel);
  show(Boolean(token()));
});
