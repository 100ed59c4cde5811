-- wrk script of the benchmark: sends the requests of a file in turn, one per line.
--   wrk ... -s rotate.lua URL -- METHOD FILE AUTHORIZATION [PATH]
-- GET:  each line is a path.   POST: each line is a JSON body, sent to PATH.
-- Requests are formatted once, in init; request() only hands the next one out, so the
-- script costs wrk next to nothing per request.
local requests = {}
local count = 0
local index = 0

function init(args)
  local method, file, authorization, path = args[1], args[2], args[3], args[4]
  for line in io.lines(file) do
    if #line > 0 then
      local headers = {}
      if authorization ~= "" then headers["Authorization"] = authorization end
      if method == "GET" then
        requests[#requests + 1] = wrk.format("GET", line, headers)
      else
        headers["Content-Type"] = "application/json"
        requests[#requests + 1] = wrk.format(method, path, headers, line)
      end
    end
  end
  count = #requests
  index = math.random(count) - 1
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "max": %d, ' ..
    '"p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
