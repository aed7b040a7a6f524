// pgkeep console: the notices every view and action shares, and the current view's refresh.

import { SignedOut } from "./api.js";
import { $ } from "./ui.js";

export function say(text) {
  $("message").textContent = text;
  $("error").textContent = "";
  $("error").classList.remove("partial");
}

// `from`: "load" when a view could not be fetched, so its next good fetch clears it.
export function fail(text, partial, from) {
  $("error").textContent = text;
  $("error").classList.toggle("partial", Boolean(partial));
  $("error").dataset.from = from || "";
  $("message").textContent = "";
}

export function loaded() {
  if ($("error").dataset.from === "load") { fail(""); }
}

export function clearNotices() { say(""); }

// A failed request says why and leaves what is on screen as it was; after a 401 the
// sign-in form says it instead.
export function problem(e, from) {
  if (e instanceof SignedOut) { return; }
  fail(e.message, false, from);
}

let current = async () => {};
export function setRefresh(fn) { current = fn; }
export function refresh() { return current(); }
