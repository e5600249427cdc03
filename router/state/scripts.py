"""The Lua scripts of the Redis backend: each one update of shared state, atomic in Redis.

Time comes from Redis (`TIME`), so processes on hosts whose clocks differ still agree on buckets and
session ages. Trimming a session mirrors `router.sessions.SessionStore._trim`: while the session holds
more than `max_messages` messages or more than `max_chars` characters, drop the oldest; each message's
size is computed by the router (`router.sessions.message_size`: the whole message's JSON) and stored in
front of it.
"""

TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[1])
local rate = cap / 60.0
local b = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(b[1]) or cap
local stamp = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
return tostring(wait)
"""
"""take(bucket; per_minute) -> seconds to wait ("0" when admitted). An absent bucket is a full one."""

RECORD = """
local id, owner, prefix = ARGV[1], ARGV[2], ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', prefix .. 'clock') or 0)
if now <= last then now = last + 1 end
redis.call('SET', prefix .. 'clock', now)
local ttl = tonumber(ARGV[6])
local idle = ttl * 1000
local owners = prefix .. 'owners'
local mine = prefix .. 'o:' .. owner
local function forget(sid, o)
  redis.call('DEL', prefix .. 's:' .. sid, prefix .. 'm:' .. sid)
  redis.call('ZREM', KEYS[3], sid)
  redis.call('ZREM', prefix .. 'o:' .. o, sid)
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - idle)
for _, sid in ipairs(dead) do redis.call('DEL', prefix .. 's:' .. sid, prefix .. 'm:' .. sid) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - idle) end
for _, o in ipairs(redis.call('SMEMBERS', owners)) do
  redis.call('ZREMRANGEBYSCORE', prefix .. 'o:' .. o, '-inf', now - idle)
  if o ~= owner and redis.call('ZCARD', prefix .. 'o:' .. o) == 0 then redis.call('SREM', owners, o) end
end
local found = redis.call('HGET', KEYS[1], 'owner')
local evicted = 0
if found == false then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', mine, id)
  local per_key = tonumber(ARGV[9])
  while redis.call('ZCARD', mine) >= per_key do
    local old = redis.call('ZPOPMIN', mine)
    forget(old[1], owner)
    evicted = evicted + 1
  end
  local most = tonumber(ARGV[3])
  while redis.call('ZCARD', KEYS[3]) >= most do
    local victim, size = owner, redis.call('ZCARD', mine)
    for _, o in ipairs(redis.call('SMEMBERS', owners)) do
      local c = redis.call('ZCARD', prefix .. 'o:' .. o)
      if c > size then victim, size = o, c end
    end
    if size == 0 then
      local old = redis.call('ZPOPMIN', KEYS[3])
      redis.call('DEL', prefix .. 's:' .. old[1], prefix .. 'm:' .. old[1])
    else
      local old = redis.call('ZPOPMIN', prefix .. 'o:' .. victim)
      forget(old[1], victim)
    end
    evicted = evicted + 1
  end
  redis.call('SADD', owners, owner)
  redis.call('HSET', KEYS[1], 'owner', owner, 'chars', 0, 'turns', 0, 'interrupted', 0)
elseif found ~= owner then
  return {-1, 0, 0}
end
local chars = tonumber(redis.call('HGET', KEYS[1], 'chars'))
for i = 10, #ARGV, 2 do
  redis.call('RPUSH', KEYS[2], ARGV[i] .. ':' .. ARGV[i + 1])
  chars = chars + tonumber(ARGV[i])
end
local len = redis.call('LLEN', KEYS[2])
local most_messages, most_chars = tonumber(ARGV[4]), tonumber(ARGV[5])
local trimmed = 0
while len > 0 and (len > most_messages or chars > most_chars) do
  local m = redis.call('LPOP', KEYS[2])
  chars = chars - tonumber(string.match(m, '^(%d+):'))
  len = len - 1
  trimmed = trimmed + 1
end
redis.call('HSET', KEYS[1], 'chars', chars)
redis.call('HINCRBY', KEYS[1], 'turns', 1)
redis.call('HINCRBY', KEYS[1], 'interrupted', tonumber(ARGV[7]))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now, id)
redis.call('ZADD', mine, now, id)
return {1, evicted, trimmed}
"""
"""record(meta, messages, index; id, owner, max_sessions, max_messages, max_chars, ttl_ms, interrupted,
prefix, max_sessions_per_key, size1, json1, ...) -> {1, evicted, trimmed}, or {-1, 0, 0} when another
owner has the id. Last-use scores are microseconds from Redis's clock, made strictly increasing through
`<prefix>clock`, so least-recently-used order is exact even for turns within one microsecond. A new
session first makes room as `router.sessions.make_room` does: its owner's own
least recently used sessions go until it holds fewer than `max_sessions_per_key` (each owner's sessions are
a sorted set `<prefix>o:<owner>` by last use), then, while the store is full, the owner holding the most
sessions (the newcomer's owner on a tie) loses its least recently used one."""

HISTORY = """
local found = redis.call('HGET', KEYS[1], 'owner')
if found == false then return {0} end
if found ~= ARGV[2] then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', ARGV[4] .. 'clock') or 0)
if now <= last then now = last + 1 end
redis.call('SET', ARGV[4] .. 'clock', now)
local ttl = tonumber(ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZADD', ARGV[4] .. 'o:' .. ARGV[2], now, ARGV[1])
local out = {1}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[#out + 1] = m end
return out
"""
"""history(meta, messages, index; id, owner, ttl_ms, prefix) -> {1, messages...}, {0} for none, {-1}
another's."""

DELETE = """
local found = redis.call('HGET', KEYS[1], 'owner')
if found == false or found ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', ARGV[3] .. 'o:' .. ARGV[2], ARGV[1])
return 1
"""
"""delete(meta, messages, index; id, owner, prefix) -> 1 when deleted, 0 when there was none for this
owner."""

LEASE = """
local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
"""lease(key; holder, ttl_ms) -> 1 when `holder` holds (took or renewed) the lease, else 0."""
