-- wrk script for the soak (tests/perf/soak.py): POST chat requests with the key in $API_KEY, half of them
-- turns of one of $SESSIONS server-side sessions, each connection waiting $DELAY_MS before each request so
-- the whole runs at about the rate asked for. At the end one line: RESULT {"requests":..,"errors":..}.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
local sessions = tonumber(os.getenv("SESSIONS") or "120")
local pause = tonumber(os.getenv("DELAY_MS") or "0")
local plain = '{"model":"bench","messages":[{"role":"user","content":"Say hi."}],"max_tokens":16}'
local n = 0

function request()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format(nil, nil, nil, plain)
  end
  local body = string.format(
    '{"model":"bench","session_id":"soak-%d","messages":[{"role":"user","content":"Turn %d."}]}',
    math.random(sessions), n)
  return wrk.format(nil, nil, nil, body)
end

function delay()
  return pause
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"seconds":%.3f,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
