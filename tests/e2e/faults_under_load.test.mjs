// Faults under load: while a steady stream of signed events goes to
// odoo-webhook and the router delivers them to a local receiver, each fault
// in turn: PostgREST killed and restarted, Postgres restarted (fast
// shutdown), workerd killed and restarted, the receiver stalled. After each,
// with no manual step (no router run by hand): every event answered 200 is in
// the outbox and event_log and reaches the receiver, which deduplicates by
// webhook-id (delivery below it is at least once); every other answer is a
// 503 or 4xx, or no answer at all while workerd itself is down.
//
// Prints one row per fault and writes them to .local/faults.json. Bounded:
// about 15 s of load per fault and at most DRAIN_MS for delivery to catch up;
// 127.0.0.1 only. FAULT_RATE sets requests a second (25).
//
//   flock -o /tmp/switchyard-e2e.lock node --test tests/e2e/faults_under_load.test.mjs
//   scripts/bench faults
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { ROOT, signedLoad, sql, startReceiver, waitFor } from "./helpers.mjs";

const RATE = Number(process.env.FAULT_RATE ?? 25);
const BEFORE_MS = 4000; // load before the fault
const DOWN_MS = 3000; // how long a stopped component stays down
const AFTER_MS = 8000; // load after it is back
const DRAIN_MS = 240_000; // lease expiry, backoff and pg_cron's minute fit well inside
const REQUEST_TIMEOUT_MS = 10_000;
const ROUTE_TIMEOUT_MS = 3000;
const pattern = `faults${process.pid}.*`;
const WORKERD_LOG = path.join(ROOT, ".local/workerd.log");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

/** A stack.sh command without blocking the load's event loop. */
async function stack(command) {
  await run("bash", ["-c", `. "${ROOT}/scripts/lib/stack.sh"; ${command}`], { timeout: 120_000 });
}

// The receiver: records every delivery by webhook-id; stalls (answers after
// the route's timeout) while `stalled`.
const deliveries = new Map();
let stalled = false;
const receiver = await startReceiver((request) => {
  const id = request.headers["webhook-id"];
  deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
  return stalled ? { status: 200, delayMs: ROUTE_TIMEOUT_MS + 2000 } : { status: 200 };
});
sql(`insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
     values ('${pattern}', '${receiver.url}/hooks/faults', 'whsec_ZmF1bHRzLXVuZGVyLWxvYWQtc2VjcmV0LTAxMjM0NQ==',
             ${ROUTE_TIMEOUT_MS}, 8)`);
const rows = [];

after(async () => {
  stalled = false;
  await receiver.close();
  sql(`delete from integration.routes where event_pattern = '${pattern}'`);
  writeFileSync(path.join(ROOT, ".local/faults.json"), JSON.stringify(rows, null, 2));
});

async function scenario(t, name, inject) {
  const type = pattern.replace("*", `${name.replace(/\W+/g, "_")}`);
  const logFrom = statSync(WORKERD_LOG).size;
  const load = signedLoad(RATE, type, REQUEST_TIMEOUT_MS);
  await sleep(BEFORE_MS);
  const faultAt = Date.now();
  await inject();
  const backAt = Date.now();
  await sleep(AFTER_MS);
  const answers = await load.stop();

  const ok = answers.filter((a) => a.status === 200);
  const ids = ok.map((a) => a.id);
  const firstFailure = answers.filter((a) => a.status !== 200).sort((a, b) => a.at - b.at)[0];
  const recovered = firstFailure
    ? ok.filter((a) => a.sentAt > firstFailure.sentAt).sort((a, b) => a.at - b.at)[0]
    : null;
  const list = ids.map((id) => `'${id}'`).join(",") || "null";
  const inOutbox = Number(sql(`select count(*) from integration.outbox_and_archive where id in (${list})`));
  const inLog = Number(sql(`select count(*) from integration.event_log where event_id in (${list})`));
  // Drained: every accepted event reached the receiver and the outbox says
  // completed (an attempt that timed out while the receiver took it is
  // delivered again later: at least once).
  const completedCount = () =>
    Number(sql(`select count(*) from integration.outbox_and_archive where id in (${list}) and status = 'completed'`));
  let drainedAt = null;
  try {
    await waitFor(`the ${name} events to be delivered`,
      () => ids.every((id) => deliveries.has(id)) && completedCount() === ids.length, DRAIN_MS, 500);
    drainedAt = Date.now();
  } catch {
    // Reported as lost below.
  }
  const delivered = ids.filter((id) => deliveries.has(id)).length;
  const completed = completedCount();
  const row = {
    fault: name,
    requests: answers.length,
    ok: ok.length,
    s503: answers.filter((a) => a.status === 503).length,
    s4xx: answers.filter((a) => a.status >= 400 && a.status < 500).length,
    other5xx: answers.filter((a) => a.status >= 500 && a.status !== 503).length,
    no_answer: answers.filter((a) => a.status === 0).length,
    lost: ids.length - Math.min(inOutbox, inLog, delivered),
    duplicates_delivered: ids.reduce((n, id) => n + Math.max(0, (deliveries.get(id) ?? 0) - 1), 0),
    recovery_s: recovered ? +((recovered.at - faultAt) / 1000).toFixed(1) : 0,
    down_s: +((backAt - faultAt) / 1000).toFixed(1),
    drained_s: drainedAt ? +((drainedAt - faultAt) / 1000).toFixed(1) : null,
    codes: [...new Set(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.code}`))],
  };
  rows.push(row);
  t.diagnostic(JSON.stringify(row));

  assert.ok(ok.length > 0, "some events were accepted");
  assert.equal(inOutbox, ok.length, "every 200 is in the outbox");
  assert.equal(inLog, ok.length, "and in event_log");
  assert.equal(delivered, ok.length, "and reached the receiver");
  assert.equal(completed, ok.length, "and is completed");
  assert.equal(row.lost, 0);
  // The log is read only when there is something to explain.
  const causes = row.other5xx ? `; logged causes: ${otherCauses(logFrom).join("; ")}` : "";
  assert.equal(row.other5xx, 0, `only 503s among server errors: ${row.codes.join(", ")}${causes}`);
  for (const a of answers.filter((x) => x.status === 503)) assert.equal(a.code, "upstream_unavailable");
  return row;
}

/** The causes odoo-webhook logged for its 5xx answers other than 503 since `from` (bytes). */
function otherCauses(from) {
  const lines = readFileSync(WORKERD_LOG).subarray(from).toString("utf8").split("\n");
  return [...new Set(lines.filter((l) => l.includes('"fn":"odoo-webhook"')).flatMap((l) => {
    try {
      const line = JSON.parse(l);
      return line.status >= 500 && line.status !== 503 ? [`${line.code}: ${line.cause}`] : [];
    } catch {
      return [];
    }
  }))];
}

test("PostgREST killed and restarted under load", async (t) => {
  await scenario(t, "kill PostgREST", async () => {
    await stack("stop_process postgrest");
    await sleep(DOWN_MS);
    await stack("start_postgrest");
  });
});

test("Postgres restarted (fast shutdown) under load", async (t) => {
  await scenario(t, "restart Postgres", async () => {
    await stack("stop_postgres");
    await sleep(DOWN_MS);
    await stack("start_postgres");
  });
});

test("workerd killed and restarted under load", async (t) => {
  await scenario(t, "kill workerd", async () => {
    const pid = Number(readFileSync(path.join(ROOT, ".local/workerd.pid"), "utf8").trim());
    process.kill(pid, "SIGKILL");
    await waitFor("workerd to be gone", () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await sleep(DOWN_MS);
    await stack("start_workerd");
  });
});

test("the receiver stalled under load", async (t) => {
  await scenario(t, "stall the receiver", async () => {
    stalled = true;
    await sleep(2 * DOWN_MS);
    stalled = false;
  });
});

test("the table", () => {
  const header = ["fault", "requests", "200s", "503s", "4xx", "no answer", "lost", "dup. delivered", "recovery s", "drained s"];
  const lines = rows.map((r) => [r.fault, r.requests, r.ok, r.s503, r.s4xx, r.no_answer, r.lost, r.duplicates_delivered,
    r.recovery_s, r.drained_s]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const format = (cells) => cells.map((c, i) => String(c).padStart(widths[i])).join("  ");
  for (const line of [format(header), ...lines.map(format)]) console.log(line);
  assert.equal(rows.length, 4);
});
