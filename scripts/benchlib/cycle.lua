-- wrk script for scripts/bench: POSTs request bodies read from a file, one body
-- per line ($BENCH_BODIES), cycling through them; each wrk thread starts at a
-- different line. When done it prints one parseable line:
--   BENCH rps=<req/s> p50_ms=<ms> p99_ms=<ms> mean_ms=<ms> requests=<n>
--         errors=<n> duration_s=<s> tokens=<n> bad=<n>
-- errors counts socket errors, timeouts and non-2xx/3xx answers (wrk's own count).
-- With BENCH_COUNT_TOKENS=1 every answer's body is read: tokens sums its
-- usage.completion_tokens (OpenAI's completions) and bad counts answers that
-- are not 200 or carry no such field. Without it wrk never hands bodies to Lua.

local path = os.getenv("BENCH_BODIES")
bodies = {}
if path then
  for line in io.lines(path) do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
end
if #bodies == 0 then
  error("BENCH_BODIES must name a file with one request body per line")
end

local headers = { ["Content-Type"] = "application/json" }
if os.getenv("BENCH_API_KEY") then
  headers["X-API-Key"] = os.getenv("BENCH_API_KEY")
end

-- Main state: the threads, to read their counters in done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- Thread state (globals, so that thread:get can read them).
id = 0
next_body = 0
tokens = 0
bad = 0

function init(args)
  -- Spread the threads' starting points over the list.
  next_body = math.floor(id * #bodies / 8) % #bodies
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[next_body])
end

if os.getenv("BENCH_COUNT_TOKENS") == "1" then
  function response(status, hdrs, body)
    local n = status == 200 and body and body:match('"completion_tokens"%s*:%s*(%d+)')
    if n then
      tokens = tokens + tonumber(n)
    else
      bad = bad + 1
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local total_tokens, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_tokens = total_tokens + (t:get("tokens") or 0)
    total_bad = total_bad + (t:get("bad") or 0)
  end
  io.write(string.format(
    "BENCH rps=%.3f p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f requests=%d errors=%d duration_s=%.3f tokens=%d bad=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.requests, errors, summary.duration / 1e6, total_tokens, total_bad))
end
