// pgkeep console: the one door to the API. The token (an OWNER JWT or an API key) lives in
// this tab's sessionStorage and travels only in the Authorization header, never in a URL;
// without one, no request is sent at all.

const KEY = "pgkeep.token";

export function token() { return sessionStorage.getItem(KEY) || ""; }
export function setToken(value) { sessionStorage.setItem(KEY, value); }
export function clearToken() { sessionStorage.removeItem(KEY); }

// An error the server answered: its own words (`error`, `details`) and the whole body.
export class ApiError extends Error {
  constructor(status, data, fallback) {
    const details = data.details ? ` (${data.details})` : "";
    super(`${data.error || fallback || `HTTP ${status}`}${details}`);
    this.status = status;
    this.data = data;
  }
}

// Thrown after a 401 (or with no token): the sign-in form already says why.
export class SignedOut extends Error {}

const listeners = { signedOut: [] };
export function onSignedOut(fn) { listeners.signedOut.push(fn); }

// An API key (`pgk_…`) or a bearer token (an OWNER JWT): both go in the same header.
export function isKey(value) { return String(value || "").startsWith("pgk_"); }

function refused(data) {
  const what = isKey(token()) ? "API key" : "token";
  clearToken();
  const details = data.details ? ` (${data.details})` : "";
  const why = `Signed out: the server refused the ${what}: ${data.error || "401"}${details}. ` +
    "Paste a new one.";
  for (const fn of listeners.signedOut) { fn(why); }
  return new SignedOut(why);
}

function headers(extra) {
  const current = token();
  if (!current) { throw new SignedOut("not signed in"); }
  return { Authorization: `Bearer ${current}`, ...extra };
}

export async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) { init.body = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new Error(`pgkeep did not answer (${e.message})`);
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) { throw refused(data); }
  if (!response.ok) { throw new ApiError(response.status, data, response.statusText); }
  return data;
}

export function query(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") { q.set(k, String(v)); }
  }
  const s = q.toString();
  if (!s) { return path; }
  return `${path}${path.includes("?") ? "&" : "?"}${s}`;
}

// Server-Sent Events read through fetch, so the token travels in a header, not the URL.
// Calls `onJob` with each state and answers the last one.
export async function watch(job, onJob) {
  const response = await fetch(`/api/backup/jobs/${encodeURIComponent(job.id)}/events`,
    { headers: headers({ Accept: "text/event-stream" }) });
  if (response.status === 401) { throw refused(await response.json().catch(() => ({}))); }
  if (!response.ok || !response.body) {
    throw new ApiError(response.status, await response.json().catch(() => ({})), response.statusText);
  }
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
      onJob(last);
    }
  }
}
