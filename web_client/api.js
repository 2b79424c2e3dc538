// The facecast HTTP API as the page uses it: JSON in and out, {"detail"} errors, the token.
// Kept apart from the UI so every request goes through one place that adds the token.

// An optional API token from ?token=XYZ; the server checks it on every request.
const TOKEN = new URLSearchParams(location.search).get("token");

// For URLs the page cannot add headers to: <img src>, WebSocket.
export function withToken(url) {
  if (!TOKEN) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
}

export function authHeaders() {
  return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
}

export function websocketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return withToken(`${scheme}//${location.host}${path}`);
}

export function formWith(file) {
  const form = new FormData();
  form.append("file", file);
  return form;
}

// FastAPI errors are {"detail": "..."}; validation errors carry a list of {loc, msg}.
function detailOf(payload, response) {
  const detail = payload && payload.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return `${response.status} ${response.statusText || "error"}`;
}

// One request; resolves to the parsed JSON body (null when empty), throws Error(detail).
export async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body instanceof FormData) init.body = body; // the browser sets the multipart boundary
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init).catch((err) => {
    throw new Error(`cannot reach the server (${method} ${path}): ${err.message}`);
  });
  const text = await response.text();
  let payload = null;
  try { payload = text ? JSON.parse(text) : null; } catch { /* not JSON: fall back to the status */ }
  if (!response.ok) throw new Error(detailOf(payload, response));
  return payload;
}
