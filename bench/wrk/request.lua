-- wrk script for keyport-bench: an OpenAI chat completion POST with the
-- Keyport client token as its API key, and a one-line JSON summary.
--
-- KP_BENCH_TOKEN       the client token (the mock and the floor ignore it)
-- KP_BENCH_REQUEST_PAD bytes of filler added to the prompt, for large bodies

local token = os.getenv("KP_BENCH_TOKEN") or ""
local pad = tonumber(os.getenv("KP_BENCH_REQUEST_PAD") or "0") or 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
  .. string.rep("x", pad)
  .. 'Say hello to the benchmark."}]}'

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'KPBENCH {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,'
      .. '"status_errors":%d,"timeouts":%d,'
      .. '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
