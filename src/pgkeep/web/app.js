// pgkeep console: plain JavaScript against the pgkeep API; no build step, no CDN.
"use strict";

const KEY = "pgkeep.token";
const TARGET = "pgkeep.target";
const ALL = "*";
const $ = (id) => document.getElementById(id);

// The target a request is about: the picked one, or a backup's own when showing all.
function picked() { return sessionStorage.getItem(TARGET) || ""; }
function withTarget(path, target) {
  const name = target || (picked() === ALL ? "" : picked());
  if (!name) { return path; }
  return `${path}${path.includes("?") ? "&" : "?"}target=${encodeURIComponent(name)}`;
}

function token() { return sessionStorage.getItem(KEY); }

// `why`: shown on the sign-in form when the server refused the token (expired, forged…).
function show(signedIn, why) {
  $("login").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("login-error").textContent = why || "";
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
  const details = data.details ? ` (${data.details})` : "";
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    show(false, `Signed out: the server refused the token: ${data.error || "401"}${details}. ` +
      "Paste a new one.");
  }
  if (!response.ok) {
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

// A badge, and for a failed verify or an untrusted backup the reason, in words.
function badge(backup) {
  const wrap = document.createElement("span");
  const span = document.createElement("span");
  span.className = "badge";
  let reason = "";
  if (!backup.signed) {
    span.textContent = "unsigned";
    span.classList.add("warn");
    reason = `${backup.trust}: never restored`;
  } else if (backup.verified === true) {
    span.textContent = "verified";
    span.classList.add("ok");
  } else if (backup.verified === false) {
    span.textContent = "failed";
    span.classList.add("bad");
    reason = backup.verifyProblem || "";
  } else {
    span.textContent = "not verified";
  }
  wrap.appendChild(span);
  if (backup.encrypted) {
    const lock = document.createElement("span");
    lock.className = "badge";
    lock.textContent = "encrypted";
    lock.title = `age, to ${backup.recipients.join(", ")}`;
    wrap.appendChild(lock);
  }
  if (reason) {
    const why = document.createElement("span");
    why.className = "reason";
    why.textContent = reason;
    wrap.appendChild(why);
  }
  return wrap;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

// The overview table and the picker, from GET /api/backup/targets.
async function targets() {
  const data = await api("GET", "/api/backup/targets");
  const body = $("targets").querySelector("tbody");
  body.replaceChildren();
  for (const t of data.targets) {
    const row = document.createElement("tr");
    row.dataset.target = t.name;
    cell(row, t.name, null, "name");
    cell(row, t.kind === "globals" ? `globals of ${t.server}` : `${t.database} on ${t.server}`, "What");
    cell(row, `${t.count}`, "Backups");
    cell(row, t.lastBackup ? when(t.lastBackup.created) : "none yet", "Newest");
    cell(row, t.nextRun ? when(t.nextRun) : "not scheduled", "Next run");
    const health = cell(row, "", "Health");
    const span = document.createElement("span");
    span.className = "badge";
    span.textContent = t.gone ? "gone" : t.reachable ? "reachable" : "unreachable";
    span.classList.add(t.reachable && !t.gone ? "ok" : "bad");
    health.appendChild(span);
    body.appendChild(row);
  }
  $("targets-section").hidden = data.count < 2;
  const select = $("target");
  const names = data.targets.map((t) => t.name);
  if (!names.includes(picked()) && picked() !== ALL) {
    sessionStorage.setItem(TARGET, data.defaultTarget || names[0] || "");
  }
  select.replaceChildren();
  for (const [value, text] of [...names.map((n) => [n, n]), [ALL, "all targets"]]) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    option.selected = value === picked();
    select.appendChild(option);
  }
  $("create").disabled = picked() === ALL;
}

async function refresh() {
  try {
    await targets();
    const data = await api("GET", withTarget("/api/backup/list", picked() === ALL ? ALL : ""));
    const body = $("backups").querySelector("tbody");
    body.replaceChildren();
    for (const b of data.backups) {
      const row = document.createElement("tr");
      row.dataset.filename = b.filename;
      row.dataset.target = b.target;
      cell(row, b.filename, null, "name");
      cell(row, b.target, "Target");
      cell(row, b.size, "Size");
      cell(row, new Date(b.created).toLocaleString(), "Created");
      cell(row, b.format === "custom" ? "custom" : `plain, ${b.compression}`, "Format");
      cell(row, "", "Verified").appendChild(badge(b));
      const actions = cell(row, "", null, "actions");
      actions.append(
        button("Download", () => download(b.filename, b.target), "secondary", `Download ${b.filename}`),
        button("Verify", () => verify(b.filename, b.target), "secondary", `Verify ${b.filename}`),
        button("Restore", () => restore(b.filename, b.target), "secondary", `Restore ${b.filename}`),
        button("Delete", () => remove(b.filename, b.target), "danger", `Delete ${b.filename}`),
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
    const started = await api("POST", withTarget("/api/backup/create?async=true"), body);
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

async function download(name, target) {
  try {
    const link = await api("POST", withTarget(`/api/backup/download-link/${encodeURIComponent(name)}`, target));
    const a = document.createElement("a");
    a.href = link.url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    say(`Downloading ${name}.`);
  } catch (e) { fail(e.message); }
}

async function verify(name, target) {
  say(`Verifying ${name}…`);
  try {
    const result = await api("POST", withTarget(`/api/backup/${encodeURIComponent(name)}/verify`, target));
    const failed = result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.details}`);
    if (result.verified) { say(`${name} verified: ${result.checks.map((c) => c.name).join(", ")} ok.`); }
    else { fail(`${name} failed verification: ${failed.join("; ")}`); }
  } catch (e) { fail(e.message); }
  refresh();
}

async function restore(name, target) {
  const database = window.prompt(
    `Restore ${name} into a NEW database.\nType the name of the database to create:`);
  if (!database) { return; }
  say(`Restoring ${name} into ${database}…`);
  try {
    const result = await api("POST", withTarget(`/api/backup/${encodeURIComponent(name)}/restore`, target),
      { targetDatabase: database });
    const rows = result.tables.reduce((n, t) => n + t.restoredRows, 0);
    say(`Restored into ${result.targetDatabase}: ${result.tables.length} tables, ${rows} rows, counts match.`);
  } catch (e) { fail(e.message); }
}

async function remove(name, target) {
  if (!window.confirm(`Delete ${name}? This cannot be undone.`)) { return; }
  try {
    await api("DELETE", withTarget(`/api/backup/${encodeURIComponent(name)}`, target));
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
  $("target").addEventListener("change", () => {
    sessionStorage.setItem(TARGET, $("target").value);
    refresh();
  });
  $("cancel").addEventListener("click", cancel);
  show(Boolean(token()));
});
