-- The benchmark's wrk script: a POST body of BENCH_POST_BYTES bytes when
-- that is set, and one machine-readable summary line when the run ends.
local post = tonumber(os.getenv("BENCH_POST_BYTES") or "0")
if post > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("a", post)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
