// Calls to the GeoWarn API. The session is the HttpOnly cookie set at login (SameSite=Strict,
// so other sites cannot use it): this script never holds the token, and EventSource, which
// cannot send headers, is authenticated the same way.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(path, { method = "GET", json, form } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  const body = await r.json().catch(() => ({}));
  const detail = typeof body.detail === "string" ? body.detail : r.statusText;
  // The session ended (expired, logged out elsewhere, password changed): back to the login.
  if (r.status === 401 && path !== "/api/auth/login") {
    window.dispatchEvent(new CustomEvent("geowarn:session-ended", { detail }));
  }
  if (!r.ok) throw new ApiError(r.status, detail);
  return body;
}

// The OpenAPI document says which optional endpoints this server has (notifications are
// added by a later part of the API): asking for a missing one would only log a 404.
let paths = null;
export async function hasPath(path) {
  if (paths === null) {
    const doc = await api("/openapi.json");
    paths = new Set(Object.keys(doc.paths || {}));
  }
  return paths.has(path);
}

// A tiny element builder: h("div", {class: "x", onclick: f}, "text", child, ...).
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "path", "line", "polyline", "polygon", "rect", "circle", "text",
    "title", "tspan"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
