// The services `scripts/bench health` registers: one HTTP server on an
// ephemeral 127.0.0.1 port, where GET /s/N answers by N % 20, so the mix is
// exact in any run of 20 consecutive services:
//   0-15  fast: 200 "ok" after 5-50 ms               (80%)
//   16-17 slow: 200 "ok" after 300-800 ms            (10%, degraded at degraded_ms 200)
//   18    503 "unavailable" after 5-50 ms            (5%)
//   19    silent: no answer for 5 s                  (5%, past timeout_ms 1000)
// Prints "ready PORT" on stderr once listening; on SIGTERM prints one JSON
// line: requests by kind and the most requests it had in flight at once.
// Stops by itself after 15 minutes in any case.
import http from "node:http";

const kinds = { fast: 0, slow: 0, unavailable: 0, silent: 0 };
let inFlight = 0;
let maxInFlight = 0;
const between = (lo, hi) => lo + Math.random() * (hi - lo);

const server = http.createServer((req, res) => {
  const n = Number(req.url.split("/")[2]) % 20;
  const [kind, status, body, delay] =
    n < 16 ? ["fast", 200, "ok", between(5, 50)]
    : n < 18 ? ["slow", 200, "ok", between(300, 800)]
    : n < 19 ? ["unavailable", 503, "unavailable", between(5, 50)]
    : ["silent", 200, "ok", 5000];
  kinds[kind]++;
  maxInFlight = Math.max(maxInFlight, ++inFlight);
  const timer = setTimeout(() => res.writeHead(status, { "content-type": "text/plain" }).end(body), delay);
  res.on("close", () => {
    clearTimeout(timer);
    inFlight--;
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => console.error(`ready ${server.address().port}`));
function stop() {
  console.log(JSON.stringify({ requests: kinds, max_in_flight: maxInFlight }));
  process.exit(0);
}
process.on("SIGTERM", stop);
setTimeout(stop, 15 * 60_000);
