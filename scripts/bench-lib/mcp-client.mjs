// scripts/bench mcp: a read tool through ops-mcp vs the same RPC called
// directly through PostgREST, interleaved, one request at a time.
//
//   (a) POST /rest/v1/rpc/list_recent_jobs (Content-Profile: observability),
//       as the service role: the RPC the tool runs;
//   (b) POST /functions/v1/ops-mcp tools/call list_recent_jobs with the agent
//       token: the JSON-RPC layer, the argument check and the same RPC; the
//       audit row every tool call writes (ops.record_tool_call) is written
//       after the answer, on the same machine, so its cost is in the figures.
//
// ROUNDS (default 300) of each after 20 warm-up rounds; p50/p99 in ms and the
// ratio. The audit rows it writes stay (ops.run_events is append-only).
// The running stack's `scripts/dev env`, as the end-to-end tests read it.
import { env } from "../../tests/e2e/helpers.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 300);

const direct = () =>
  fetch(`${env.REST_URL}/rpc/list_recent_jobs`, {
    method: "POST",
    headers: {
      apikey: env.SERVICE_ROLE_KEY,
      authorization: `Bearer ${env.SERVICE_ROLE_KEY}`,
      "content-profile": "observability",
      "content-type": "application/json",
    },
    body: JSON.stringify({ p_limit: 10, p_status: null, p_job_type: null }),
  });

let id = 0;
const tool = () =>
  fetch(env.MCP_URL, {
    method: "POST",
    headers: {
      authorization: `Bearer ${env.OPS_MCP_TOKEN}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method: "tools/call", params: { name: "list_recent_jobs", arguments: { limit: 10 } } }),
  });

async function timed(send, check) {
  const started = performance.now();
  const response = await send();
  const body = await response.json();
  const ms = performance.now() - started;
  if (response.status !== 200 || !check(body)) throw new Error(`unexpected answer: ${response.status} ${JSON.stringify(body).slice(0, 200)}`);
  return ms;
}

const samples = { direct: [], tool: [] };
for (let round = -20; round < ROUNDS; round++) {
  const pair = [
    ["direct", () => timed(direct, Array.isArray)],
    ["tool", () => timed(tool, (b) => b.result && b.result.isError === false && Array.isArray(b.result.structuredContent.jobs))],
  ];
  if (round % 2) pair.reverse();
  for (const [name, run] of pair) {
    const ms = await run();
    if (round >= 0) samples[name].push(ms);
  }
}
const pct = (values, p) => [...values].sort((a, b) => a - b)[Math.ceil((p / 100) * values.length) - 1];
const line = (label, v) => console.log(`${label.padEnd(52)}${pct(v, 50).toFixed(2).padStart(8)}${pct(v, 99).toFixed(2).padStart(8)}`);
console.log(`\n${ROUNDS} rounds, one request at a time (ms)                 p50     p99`);
line("(a) list_recent_jobs RPC through PostgREST", samples.direct);
line("(b) ops-mcp tools/call list_recent_jobs", samples.tool);
console.log(`ratio b/a p50 ${(pct(samples.tool, 50) / pct(samples.direct, 50)).toFixed(2)}x  p99 ${(pct(samples.tool, 99) / pct(samples.direct, 99)).toFixed(2)}x`);
