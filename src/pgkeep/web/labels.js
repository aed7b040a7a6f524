// pgkeep console: a backup's labels, edited in place. Saved with PATCH as RFC 7396 merges
// (a value sets a label, null removes it, the rest stay); the API validates, and its
// refusal is shown in the dialog, which stays open.

import { api, query } from "./api.js";
import { problem, refresh, say } from "./shell.js";
import { el, filename } from "./ui.js";

// What changed, as a merge patch: removed → null, changed or new → the value.
function patch(form, current) {
  const body = {};
  for (const [key, value] of Object.entries(current)) {
    if (form.querySelector(`input[data-remove="${CSS.escape(key)}"]`).checked) { body[key] = null; }
    else {
      const now = form.querySelector(`input[data-value="${CSS.escape(key)}"]`).value;
      if (now !== value) { body[key] = now; }
    }
  }
  const key = form.elements["label-key"].value.trim();
  if (key) { body[key] = form.elements["label-value"].value; }
  return body;
}

function row(key, value, i) {
  return el("li", { className: "label-row", dataset: { label: key } },
    el("label", { htmlFor: `label-${i}` }, key),
    el("input", { id: `label-${i}`, value, maxLength: 200, autocomplete: "off", dataset: { value: key } }),
    el("label", { className: "check" }, el("input", { type: "checkbox", dataset: { remove: key } }),
      `Remove ${key}`));
}

export function editLabels(target, backup) {
  const current = { ...(backup.labels || {}) };
  const error = el("p", { className: "error", role: "alert", id: "labels-error" });
  const submit = async (event) => {
    event.preventDefault();
    const body = patch(event.target, current);
    if (!Object.keys(body).length) { box.close(); return; }
    try {
      await api("PATCH", query(`/api/backup/${encodeURIComponent(backup.filename)}`, { target }),
        { labels: body });
    } catch (e) {
      if (e.status) { error.textContent = e.message; return; }  // the API's own words
      box.close();
      problem(e);
      return;
    }
    box.close();
    say(`Labels of ${backup.filename} saved.`);
    await refresh().catch(problem);
  };
  const entries = Object.entries(current);
  const box = el("dialog", { id: "labels-dialog", aria: { labelledby: "labels-title" },
    on: { close: () => box.remove() } },
  el("form", { method: "dialog", on: { submit } },
    el("h2", { id: "labels-title" }, "Labels"),
    el("p", { className: "name" }, filename(backup.filename)),
    entries.length ? el("ul", { className: "label-rows" }, entries.map(([k, v], i) => row(k, v, i)))
      : el("p", { className: "muted" }, "No labels yet."),
    el("div", { className: "filters" },
      el("div", { className: "field" }, el("label", { htmlFor: "label-key" }, "New label"),
        el("input", { id: "label-key", name: "label-key", maxLength: 40, autocomplete: "off",
          placeholder: "reason" })),
      el("div", { className: "field" }, el("label", { htmlFor: "label-value" }, "Its value"),
        el("input", { id: "label-value", name: "label-value", maxLength: 200, autocomplete: "off",
          placeholder: "pre-migration" }))),
    el("p", { className: "hint" }, "Up to 16 labels; keys of letters, digits, '.', '_', '-'. " +
      "Labels never change retention; pins do."),
    error,
    el("div", { className: "buttons" }, el("button", { type: "submit" }, "Save labels"),
      el("button", { type: "button", className: "secondary", on: { click: () => box.close() } }, "Cancel"))));
  document.body.append(box);
  box.showModal();
}
