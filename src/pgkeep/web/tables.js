// pgkeep console: table-level restore. The backup's tables come from its signed manifest
// (GET /api/backup/NAME/tables); the chosen tables and schemas are restored into a new
// database as a job (a table-level restore never replaces an existing one), and its
// result shows each table's rows proven and the foreign keys that were dropped.

import { api, query } from "./api.js";
import { backupPath, start } from "./actions.js";
import { problem } from "./shell.js";
import { $, DASH, badge, cell, el, filename, table } from "./ui.js";

const DATABASE = /^[A-Za-z0-9_-]{1,63}$/;

function pick(kind, value, ...text) {
  return el("li", {}, el("label", { className: "check" },
    el("input", { type: "checkbox", name: kind, value }), ...text));
}

function chosen(form, kind) {
  return [...form.querySelectorAll(`input[name="${kind}"]:checked`)].map((i) => i.value);
}

function shown(r) {
  const fks = r.droppedForeignKeys || [];
  const rows = (r.tables || []).map((t) => el("tr", { dataset: { table: t.table } },
    el("th", { scope: "row" }, t.table), cell("In the manifest", String(t.expectedRows ?? DASH)),
    cell("Restored", String(t.restoredRows)), cell("Proven", badge(t.ok ? "match" : "differ", t.ok ? "ok" : "bad"))));
  return el("div", { className: "result", dataset: { result: "restore" } },
    el("h3", {}, `Restored into ${r.targetDatabase}`),
    table("Tables restored, rows proven against the manifest",
      ["Table", "In the manifest", "Restored", "Proven"], rows),
    fks.length
      ? [el("p", {}, `${fks.length} foreign key${fks.length === 1 ? " was" : "s were"} dropped (they pointed to tables not restored):`),
        el("ul", { className: "dropped" }, fks.map((k) => el("li", { dataset: { droppedFk: k.name } },
          `${k.table}: ${k.name} → ${k.references}`)))]
      : el("p", { dataset: { droppedFk: "" } }, "No foreign key was dropped."));
}

function done(name, database) {
  return (job) => {
    const r = job.result;
    if (!r) { return `Restored tables of ${name} into ${database}.`; }
    $("job-result").replaceChildren(shown(r));
    const proven = (r.tables || []).every((t) => t.ok);
    return `Restored ${r.tables.length} table${r.tables.length === 1 ? "" : "s"} of ${name} into ` +
      `${database}${proven ? "; their rows match the manifest" : ""}.`;
  };
}

function dialog(target, backup, data) {
  const ready = () => {
    const form = box.querySelector("form");
    const some = chosen(form, "table").length + chosen(form, "schema").length > 0;
    go.disabled = !some || !DATABASE.test(form.elements.database.value.trim());
  };
  const go = el("button", { type: "submit" }, "Restore tables");
  const submit = (event) => {
    event.preventDefault();
    const form = event.target;
    const database = form.elements.database.value.trim();
    const body = { targetDatabase: database };
    const tables = chosen(form, "table");
    const schemas = chosen(form, "schema");
    if (tables.length) { body.tables = tables; }
    if (schemas.length) { body.schemas = schemas; }
    box.close();
    start(backupPath(backup.filename, target, "restore"), body, done(backup.filename, database));
  };
  const box = el("dialog", { id: "tables-dialog", aria: { labelledby: "tables-title" },
    on: { close: () => box.remove() } },
  el("form", { method: "dialog", on: { submit, input: ready, change: ready } },
    el("h2", { id: "tables-title" }, "Restore tables"),
    el("p", { className: "name" }, filename(backup.filename)),
    el("fieldset", {}, el("legend", {}, "Schemas (every table in them)"),
      el("ul", { className: "picks" }, data.schemas.map((s) => pick("schema", s, s)))),
    el("fieldset", {}, el("legend", {}, `Tables (${data.tables.length})`),
      el("ul", { className: "picks scroll" }, data.tables.map((t) =>
        pick("table", t.name, t.name, el("span", { className: "muted" }, ` ${t.rows} rows`))))),
    el("label", { htmlFor: "tables-database" }, "New database to restore into"),
    el("input", { id: "tables-database", name: "database", required: true, autocomplete: "off",
      pattern: "[A-Za-z0-9_\\-]{1,63}" }),
    el("p", { className: "hint" }, "Always a new database: a table-level restore never replaces one. " +
      "The chosen tables keep what they need; foreign keys to tables not chosen are dropped and listed."),
    el("div", { className: "buttons" }, go,
      el("button", { type: "button", className: "secondary", on: { click: () => box.close() } }, "Cancel"))));
  go.disabled = true;
  return box;
}

export async function restoreTables(target, backup) {
  let data;
  try {
    data = await api("GET", query(`/api/backup/${encodeURIComponent(backup.filename)}/tables`, { target }));
  } catch (e) { problem(e); return; }
  const box = dialog(target, backup, data);
  document.body.append(box);
  box.showModal();
}
