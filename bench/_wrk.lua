-- wrk script for bench/bench_serve.py: POST one fixed body (file named by $BENCH_BODY) as
-- application/json, count responses by status code, and at the end write the run's summary and its
-- latency quantiles (microseconds) as JSON to $BENCH_OUT, so the caller can merge interleaved runs.
local body_path = os.getenv("BENCH_BODY")
local f = assert(io.open(body_path, "rb"), "cannot open " .. tostring(body_path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

statuses = {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local by_status = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do
      by_status[code] = (by_status[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(by_status) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  -- This wrk build cannot index the histogram from Lua (latency[i] is broken), so sample the quantile
  -- function on a 0.1 % grid (midpoints 0.05 .. 99.95): 1000 points, each standing for
  -- 0.1 % of this run's requests. The caller merges runs as weighted samples.
  local q = {}
  if summary.requests > 0 then
    for i = 0, 999 do
      table.insert(q, string.format("%d", latency:percentile(i / 10 + 0.05)))
    end
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"statuses": {%s}, "min_us": %d, "max_us": %d, "mean_us": %.1f, "quantiles_us": [%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "), latency.min, latency.max, latency.mean, table.concat(q, ",")))
  out:close()
end
