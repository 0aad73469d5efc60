// One autocannon run, configured by a JSON argument; prints one JSON line of results.
// {url, connections, duration, headers, operations?: {products, warehouses}, badKeys?, rate?}: with `operations`,
// each request is a POST /operations receipt of 1 unit for a random (product, warehouse) pair; with `badKeys`, each
// request carries a made-up API key of its own; `rate`: requests per second in all (else as fast as it goes).
"use strict";
const autocannon = require("autocannon");

const cfg = JSON.parse(process.argv[2]);
const options = { url: cfg.url, connections: cfg.connections, duration: cfg.duration, headers: cfg.headers };
if (cfg.rate) options.overallRate = cfg.rate;
if (cfg.badKeys) {
  const crypto = require("crypto");
  options.requests = [{
    setupRequest: (request) => ({
      ...request,
      headers: { ...request.headers, authorization: `Bearer wt_${crypto.randomBytes(32).toString("base64url")}` },
    }),
  }];
}
if (cfg.operations) {
  const pick = (n) => 1 + Math.floor(Math.random() * n);
  options.requests = [{
    method: "POST",
    setupRequest: (request) => ({
      ...request,
      headers: { ...request.headers, "content-type": "application/json" },
      body: JSON.stringify({
        operation_type: "receipt", quantity: 1,
        product_id: pick(cfg.operations.products), warehouse_id: pick(cfg.operations.warehouses),
      }),
    }),
  }];
}
autocannon(options, (err, result) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(JSON.stringify({
    requests: result.requests.total, seconds: result.duration, non2xx: result.non2xx, errors: result.errors,
    timeouts: result.timeouts, statuses: Object.fromEntries(
      Object.entries(result.statusCodeStats || {}).map(([code, stats]) => [code, stats.count])),
    latency_ms: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
  }));
});
