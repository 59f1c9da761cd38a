// The local stack's Mattermost: answers incoming-webhook posts as Mattermost
// does (200, text/plain "ok") and records each message so people and tests can
// see what the n8n handlers (and later the alerts) posted.
//
//   POST /hooks/<hook>        a message; one JSON line appended to <dir>/mattermost.jsonl,
//                             one readable line printed (scripts/dev: .local/mattermost.log)
//   GET  /messages            recorded messages, oldest first, as JSON:
//                             ?since=<ISO time or Unix ms> (inclusive), ?limit=N (default 100, newest N)
//   GET  /                    the newest 100 as an HTML page
//   POST /control             {"hook":"<hook>","fail_next":N}: the next N posts to that hook answer 500
//
//   node mattermost-standin.mjs <port> <dir>
import { appendFileSync, readFileSync, existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";

const [port, dir] = process.argv.slice(2);
if (!port || !dir) {
  console.error("usage: mattermost-standin.mjs <port> <dir>");
  process.exit(2);
}
const file = path.join(dir, "mattermost.jsonl");

// Messages survive a restart: the file is the record, memory a copy of it.
const messages = existsSync(file)
  ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line))
  : [];
const failNext = new Map(); // hook -> posts still to refuse

function answer(res, status, type, body) {
  res.writeHead(status, { "content-type": type }).end(body);
}

function record(hook, message) {
  const entry = { received_at: new Date().toISOString(), hook, message };
  messages.push(entry);
  appendFileSync(file, JSON.stringify(entry) + "\n");
  const eventId = message.props?.event_id ? ` (event ${message.props.event_id})` : "";
  console.log(`${entry.received_at} #${hook} ${String(message.text ?? "").replace(/\s*\n\s*/g, " ")}${eventId}`);
}

// The recorded messages a query asks for, or null when it is malformed.
function select(query) {
  const since = query.get("since") ?? "0";
  const from = /^\d+$/.test(since) ? Number(since) : Date.parse(since);
  const limit = Number(query.get("limit") ?? 100);
  if (Number.isNaN(from) || !Number.isInteger(limit) || limit < 0) return null;
  return limit === 0 ? [] : messages.filter((m) => Date.parse(m.received_at) >= from).slice(-limit);
}

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page() {
  const rows = messages.slice(-100).reverse().map((m) => `<tr><td>${escapeHtml(m.received_at)}</td>` +
    `<td>${escapeHtml(m.hook)}</td><td>${escapeHtml(m.message.text ?? "")}</td>` +
    `<td>${escapeHtml(m.message.props?.event_id ?? "")}</td></tr>`);
  return `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Mattermost stand-in</title>
<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top;white-space:pre-wrap}</style>
<h1>Mattermost stand-in</h1><p>${messages.length} message(s), newest first; JSON at <a href="/messages">/messages</a>.</p>
<table><tr><th>received</th><th>hook</th><th>text</th><th>event</th></tr>
${rows.join("\n")}
</table>
`;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const url = new URL(req.url, "http://localhost");
    let body;
    if (req.method === "POST") {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {}
      if (typeof body !== "object" || body === null) return answer(res, 400, "text/plain", "Unable to parse incoming data");
    }
    const hook = url.pathname.match(/^\/hooks\/([^/]+)$/)?.[1];
    if (req.method === "POST" && hook) {
      const refuse = failNext.get(hook) ?? 0;
      if (refuse > 0) {
        failNext.set(hook, refuse - 1);
        console.log(`${new Date().toISOString()} #${hook} answered 500 on purpose (fail_next)`);
        return answer(res, 500, "text/plain", "failing on purpose (fail_next)");
      }
      record(hook, body);
      return answer(res, 200, "text/plain", "ok");
    }
    if (req.method === "POST" && url.pathname === "/control") {
      if (typeof body.hook !== "string" || !Number.isInteger(body.fail_next)) {
        return answer(res, 400, "text/plain", 'expected {"hook": "<hook>", "fail_next": N}');
      }
      failNext.set(body.hook, body.fail_next);
      return answer(res, 200, "application/json", JSON.stringify({ hook: body.hook, fail_next: body.fail_next }));
    }
    if (req.method === "GET" && url.pathname === "/messages") {
      const chosen = select(url.searchParams);
      if (!chosen) return answer(res, 400, "text/plain", "since must be an ISO time or Unix ms, limit a whole number");
      return answer(res, 200, "application/json", JSON.stringify(chosen));
    }
    if (req.method === "GET" && url.pathname === "/") return answer(res, 200, "text/html; charset=utf-8", page());
    answer(res, 404, "text/plain", "not found");
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1");
