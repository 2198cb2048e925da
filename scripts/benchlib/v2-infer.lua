-- wrk script for scripts/bench-v2: POSTs one V2 inference request per call and,
-- when done, prints one parseable line:
--   BENCH rps=<req/s> p50_ms=<ms> p99_ms=<ms> requests=<n> errors=<n>
-- errors counts socket errors, timeouts and non-2xx/3xx answers.
-- The body defaults to one iris row; $BENCH_BODY replaces it (the digits runs).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
  or '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
wrk.headers["Content-Type"] = "application/json"
-- $BENCH_API_KEY: sent as X-API-Key (the keyed-server run).
if os.getenv("BENCH_API_KEY") then
  wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY")
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors))
end
