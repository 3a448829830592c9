-- wrk script for the session benchmark.
--
--   wrk -t1 -c32 -d3s -s session.lua http://127.0.0.1:PORT -- METHOD PATH [COOKIE_FILE]
--
-- Each request takes the next "name=value" line of COOKIE_FILE (round robin)
-- as its Cookie header; without a file, no cookie is sent (GET /new). Every
-- request carries a browser's User-Agent, as real traffic does (a layer that
-- copies it per request pays for that here too). The summary is printed as
-- one JSON line starting with BENCHRESULT for the harness.

local method, path = "GET", "/"
local user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
local cookies = {}
local n = 0

function init(args)
  method = args[1] or "GET"
  path = args[2] or "/"
  local file = args[3]
  if file and file ~= "" then
    for line in io.lines(file) do
      if line ~= "" then cookies[#cookies + 1] = line end
    end
  end
end

function request()
  local headers = { ["User-Agent"] = user_agent }
  if #cookies > 0 then
    n = n + 1
    headers["Cookie"] = cookies[(n % #cookies) + 1]
  end
  return wrk.format(method, path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHRESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
