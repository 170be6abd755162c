-- wrk script of scripts/bench --soak: a steady mix of JSON requests and SSE streams
-- (three JSON bodies from $BENCH_BODY for each stream body from $BENCH_STREAM_BODY).
local reqs = {}
local n = 0

init = function(args)
  local headers = { ["Content-Type"] = "application/json" }
  local json = wrk.format("POST", nil, headers, os.getenv("BENCH_BODY"))
  local sse = wrk.format("POST", nil, headers, os.getenv("BENCH_STREAM_BODY"))
  reqs = { json, json, json, sse }
end

request = function()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
