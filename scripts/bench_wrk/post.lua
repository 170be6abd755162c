-- wrk script of scripts/bench: POST the JSON body given in $BENCH_BODY or the file named by
-- $BENCH_BODY_FILE (static request, no per-request Lua), then print one machine-readable
-- summary line for the bench to parse.
wrk.method = "POST"
local file = os.getenv("BENCH_BODY_FILE")  -- large bodies: an environment holds a few 100 KiB
if file then
  local fh = assert(io.open(file, "rb"))
  wrk.body = fh:read("*a")
  fh:close()
else
  wrk.body = os.getenv("BENCH_BODY")
end
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_KEY") then  -- scripts/bench --key: governance on every request
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
