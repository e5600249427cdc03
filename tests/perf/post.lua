-- wrk script: POST the JSON body in $BODY with the key in $API_KEY; at the end print one machine-readable line:
--   RESULT {"requests":..,"seconds":..,"p50_us":..,"p99_us":..,"errors":..,"unexpected":..}
-- errors = socket errors + timeouts + (unless $EXPECT is set) non-2xx/3xx answers.
-- With $EXPECT (e.g. 503) every answer's status is checked and `unexpected` counts the others;
-- that hook costs wrk some speed, so it is only installed when asked for.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BODY")
-- $BODY_FILE instead of $BODY: bodies too large for the environment (the request-size curve)
if os.getenv("BODY_FILE") then
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  wrk.body = f:read("*a")
  f:close()
end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
-- $HEADERS: more headers, "Name: value" one per line (the Portkey gateway's provider headers, an Origin)
for line in (os.getenv("HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

local expect = tonumber(os.getenv("EXPECT") or "")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if expect then
  unexpected = 0
  function response(status, headers, body)
    if status ~= expect then unexpected = unexpected + 1 end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  if not expect then errors = errors + e.status end
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("unexpected") or 0) end
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.6f,"p50_us":%d,"p99_us":%d,"errors":%d,"unexpected":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), errors, bad))
end
