// Small DOM helpers every switchyard page shares (the campaign dashboard, the
// ops console). No framework: the pages are a few screens of tables.

const TOAST_MS = 10_000;

export const $ = (id) => document.getElementById(id);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function badge(kind, value) {
  return element("span", `badge ${kind}-${value}`, value);
}

export function relativeTime(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

/** A <time> showing how long ago `iso` was, the full date on hover. */
export function timeAgo(iso, note) {
  if (!iso) return element("span", "muted", "never");
  const time = element("time", "", relativeTime(iso));
  time.dateTime = iso;
  time.title = `${new Date(iso).toLocaleString()}${note ? ` (${note})` : ""}`;
  return time;
}

/** A message in the corner: an error unless `kind` says "success". */
export function toast(message, { correlationId, kind = "error" } = {}) {
  const node = element("div", `toast toast-${kind}`);
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  node.append(element("p", "toast-message", message));
  if (correlationId) node.append(element("p", "toast-detail", `correlation id ${correlationId}`));
  const close = element("button", "toast-close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => node.remove());
  node.append(close);
  $("toasts").append(node);
  setTimeout(() => node.remove(), TOAST_MS);
}

export function uuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
