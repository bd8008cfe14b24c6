-- wrk's done() callback: one JSON line with the figures bench/wrk.py reads. Latency percentiles
-- come from wrk's own histogram (microseconds). Non-2xx answers and socket errors are failures.
local post_item = os.getenv("BENCH_POST_ITEM")
if post_item then
  -- 20 tags of 140 characters: a 2.9 KB body, within ItemIn's limits (name <= 100, tags <= 20).
  local tags = {}
  for i = 1, 20 do tags[i] = '"' .. string.rep(string.char(96 + i), 140) .. '"' end
  wrk.method = "POST"
  wrk.body = '{"name":"benchmark item","price":12.5,"tags":[' .. table.concat(tags, ",") .. "]}"
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  local fmt = '{"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},'
    .. '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}'
  io.write("BENCH_JSON ")
  io.write(string.format(fmt, summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
  io.write("\n")
end
