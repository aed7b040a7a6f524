// pgkeep console: building blocks for the views (elements, times, sizes, badges, charts).
// Everything is built with DOM calls and textContent: no HTML strings, no inline style.

export const $ = (id) => document.getElementById(id);

// el("td", {className: "x", dataset: {a: "b"}, title: "…"}, child, "text", …)
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) { continue; }
    if (key === "dataset") { Object.assign(node.dataset, value); }
    else if (key === "aria") {
      for (const [a, v] of Object.entries(value)) { node.setAttribute(`aria-${a}`, v); }
    } else if (key === "on") {
      for (const [event, fn] of Object.entries(value)) { node.addEventListener(event, fn); }
    } else { node[key] = value; }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) { continue; }
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const DASH = "—";

// "2026-12-05 11:59 UTC"
export function utc(iso) {
  if (!iso) { return DASH; }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) { return DASH; }
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

// "12 min ago", "in 3 h"
export function relative(iso, now = Date.now()) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) { return DASH; }
  const s = Math.round((t - now) / 1000);
  const a = Math.abs(s);
  let text;
  if (a < 45) { text = `${a} s`; }
  else if (a < 3600) { text = `${Math.round(a / 60)} min`; }
  else if (a < 86400 * 2) { text = `${Math.round(a / 3600)} h`; }
  else { text = `${Math.round(a / 86400)} days`; }
  if (a < 5) { return "just now"; }
  return s < 0 ? `${text} ago` : `in ${text}`;
}

// A <time>: relative, with the UTC time on hover.
export function when(iso) {
  if (!iso) { return DASH; }
  return el("time", { dateTime: iso, title: utc(iso) }, relative(iso));
}

export function bytes(n) {
  if (n === undefined || n === null || Number.isNaN(Number(n))) { return DASH; }
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function duration(ms) {
  if (ms === undefined || ms === null) { return DASH; }
  if (ms < 1000) { return `${ms} ms`; }
  const s = ms / 1000;
  return s < 90 ? `${s.toFixed(1)} s` : `${Math.round(s / 60)} min`;
}

// A file name that wraps only at its separators, never mid-word.
export function filename(name) {
  const span = el("span", { className: "name", title: name || "" });
  // Each piece is an inline block: a line may break between pieces, never inside one.
  for (const part of String(name || DASH).split(/(?<=[-._T])/)) {
    span.append(el("span", {}, part));
  }
  return span;
}

const TONE = {
  ok: "ok", restored: "ok", succeeded: "ok", true: "ok",
  failing: "bad", failed: "bad", unreachable: "bad", false: "bad",
  stale: "warn", checksum: "info", inconclusive: "warn", gone: "muted", none: "muted",
  running: "info", queued: "muted", cancelled: "muted", started: "muted", intact: "ok",
  broken: "bad", down: "bad",
};

export function badge(text, tone) {
  return el("span", { className: `badge ${tone || TONE[text] || ""}` }, text);
}

export function cell(label, ...children) {
  return el("td", { dataset: label ? { label } : {} }, ...children);
}

export function table(caption, headings, rows, className) {
  return el("div", { className: "table-wrap" },
    el("table", { className: className || "" },
      el("caption", { className: "visually-hidden" }, caption),
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return el("section", { className: "panel", aria: { labelledby: id } },
    el("h3", { id }, title), ...children);
}

export function select(id, label, options, value, onChange) {
  const s = el("select", { id, name: id, on: { change: onChange } },
    options.map(([v, t]) => el("option", { value: v, selected: v === value }, t)));
  return el("div", { className: "field" }, el("label", { htmlFor: id }, label), s);
}

// Charts: hand-written SVG (see docs/console.md for why not a library).
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) { node.setAttribute(k, String(v)); }
  node.append(...children);
  return node;
}

function scaled(values, height) {
  const max = Math.max(...values.filter((v) => v !== null && v !== undefined), 1);
  return values.map((v) => (v === null || v === undefined ? null : height - (v / max) * height));
}

// Between the smallest and the largest, so a change shows; equal values lie in the middle.
function spread(values, height) {
  const min = Math.min(...values);
  const max = Math.max(...values);
  if (max === min) { return values.map(() => height / 2); }
  return values.map((v) => height - ((v - min) / (max - min)) * height);
}

// A small line of sizes, oldest first; its <title> says what it shows in words.
export function sparkline(trend, label) {
  const points = (trend || []).filter((p) => p && p.sizeBytes !== undefined);
  if (points.length < 2) { return el("span", { className: "muted" }, DASH); }
  const w = 96;
  const h = 24;
  const ys = spread(points.map((p) => p.sizeBytes), h - 2);
  const step = w / (points.length - 1);
  const path = ys.map((y, i) => `${i ? "L" : "M"}${(i * step).toFixed(1)},${(y + 1).toFixed(1)}`);
  const first = points[0].sizeBytes;
  const last = points[points.length - 1].sizeBytes;
  const words = `${label}: ${points.length} backups, ${bytes(first)} to ${bytes(last)}`;
  return svg("svg", { class: "spark", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img",
    "aria-label": words },
  svg("title", {}, words), svg("path", { d: path.join(" ") }));
}

// Bars of size with a line of duration over them, oldest first.
export function sizeChart(trend) {
  const points = (trend || []).filter((p) => p && p.sizeBytes !== undefined);
  if (points.length === 0) { return el("p", { className: "muted" }, "No backups to chart yet."); }
  const w = 640;
  const h = 160;
  const pad = 18;
  const bar = Math.min((w - pad * 2) / points.length, 48);
  const left = pad + ((w - pad * 2) - bar * points.length) / 2;  // a few bars sit in the middle
  const sizes = scaled(points.map((p) => p.sizeBytes), h - pad * 2);
  const durations = scaled(points.map((p) => p.durationMs ?? null), h - pad * 2);
  const bars = points.map((p, i) => svg("rect", {
    class: "bar", x: (left + i * bar + bar * 0.15).toFixed(1), y: (pad + sizes[i]).toFixed(1),
    width: Math.max(bar * 0.7, 1).toFixed(1), height: (h - pad * 2 - sizes[i]).toFixed(1),
  }, svg("title", {}, `${utc(p.created)}: ${bytes(p.sizeBytes)}, ${duration(p.durationMs)}`)));
  const line = durations
    .map((y, i) => (y === null ? null : `${(left + i * bar + bar / 2).toFixed(1)},${(pad + y).toFixed(1)}`))
    .filter(Boolean);
  const maxSize = Math.max(...points.map((p) => p.sizeBytes));
  const maxMs = Math.max(0, ...points.map((p) => p.durationMs ?? 0));
  const words = `Size of the last ${points.length} backups, up to ${bytes(maxSize)}` +
    (maxMs ? `; duration up to ${duration(maxMs)}` : "");
  return el("figure", { className: "chart" },
    svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": words, preserveAspectRatio: "none" },
      svg("line", { class: "axis", x1: pad, y1: h - pad, x2: w - pad, y2: h - pad }),
      ...bars,
      line.length > 1 ? svg("polyline", { class: "duration", points: line.join(" ") }) : ""),
    el("figcaption", {}, el("span", { className: "key size" }, "size"), " ",
      maxMs ? el("span", { className: "key duration" }, "duration") : "", el("br"), `${words}.`));
}
