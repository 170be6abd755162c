"""The Lua scripts that make each limits-and-budgets call one atomic step inside Redis."""

from __future__ import annotations

# Per scope: a hash `s:SCOPE` (m = minute of the current bucket; rc/rp and tc/tp = requests and
# tokens of this and the previous minute; u:PERIOD = USD spent; soft:BUDGET:PERIOD = warned;
# d = the day the stale period fields were last swept) and a sorted set `p:SCOPE` of the holds
# in flight scored by their start, so a process that dies leaks no `max_parallel` slot for
# longer than the lease. Numbers go back to Python as strings: Redis truncates Lua floats.

_ROLL = """
local function roll(k, minute)
  local v = redis.call('HMGET', k, 'm', 'rc', 'rp', 'tc', 'tp')
  local m = tonumber(v[1]) or minute
  local rc, rp = tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local tc, tp = tonumber(v[4]) or 0, tonumber(v[5]) or 0
  if minute > m then
    if minute == m + 1 then rp, tp = rc, tc else rp, tp = 0, 0 end
    rc, tc, m = 0, 0, minute
  end
  return m, rc, rp, tc, tp
end
"""

RESERVE = (
    _ROLL
    + """
-- KEYS: hash, zset per scope. ARGV: now, minute, tokens, usd, day, month, lease, ref,
-- then per scope rpm, tpm, max_parallel, usd_per_day, usd_per_month, usd_total ('' = none).
local now, minute = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, usd = tonumber(ARGV[3]), tonumber(ARGV[4])
local periods = {ARGV[5], ARGV[6], 'total'}
local lease, ref = tonumber(ARGV[7]), ARGV[8]
local n = #KEYS / 2
local elapsed = (now % 60) / 60
local state = {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 8 + (i - 1) * 6
  local m, rc, rp, tc, tp = roll(h, minute)
  state[i] = {m, rc, rp, tc, tp}
  local function refuse(limit, extra)
    return {i, limit, tostring(m), tostring(rc), tostring(rp), tostring(tc), tostring(tp),
            tostring(extra or 0)}
  end
  local par = tonumber(ARGV[a + 3])
  if par then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - lease)
    if redis.call('ZCARD', z) >= par then return refuse('max_parallel') end
  end
  local rpm = tonumber(ARGV[a + 1])
  if rpm and rp * (1 - elapsed) + rc + 1 > rpm then return refuse('rpm') end
  local tpm = tonumber(ARGV[a + 2])
  if tpm and (tokens > tpm or tp * (1 - elapsed) + tc + tokens > tpm) then
    return refuse('tpm')
  end
  local names = {'usd_per_day', 'usd_per_month', 'usd_total'}
  for j = 1, 3 do
    local limit = tonumber(ARGV[a + 3 + j])
    if limit then
      local spent = tonumber(redis.call('HGET', h, 'u:' .. periods[j])) or 0
      if spent >= limit or spent + usd > limit then return refuse(names[j], spent) end
    end
  end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local s = state[i]
  redis.call('HSET', h, 'm', s[1], 'rc', s[2] + 1, 'rp', s[3], 'tc', s[4] + tokens, 'tp', s[5])
  if usd ~= 0 then
    for j = 1, 3 do redis.call('HINCRBYFLOAT', h, 'u:' .. periods[j], usd) end
  end
  redis.call('ZADD', z, now, ref)
  if redis.call('HGET', h, 'd') ~= periods[1] then
    for _, f in ipairs(redis.call('HKEYS', h)) do
      local p = string.match(f, '^u:(.*)$') or string.match(f, '^soft:[^:]*:(.*)$')
      if p and p ~= periods[1] and p ~= periods[2] and p ~= periods[3] then
        redis.call('HDEL', h, f)
      end
    end
    redis.call('HSET', h, 'd', periods[1])
  end
end
return {0}
"""
)

SETTLE = (
    _ROLL
    + """
-- KEYS: hash, zset per scope. ARGV: minute now, minute of the hold, token change, USD change,
-- ref, day, month, then per scope usd_per_day, usd_per_month, usd_total, soft_pct ('' = none).
local minute, held = tonumber(ARGV[1]), tonumber(ARGV[2])
local dtok, dusd, ref = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local periods = {ARGV[6], ARGV[7], 'total'}
local names = {'usd_per_day', 'usd_per_month', 'usd_total'}
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 7 + (i - 1) * 4
  if ref ~= '' then redis.call('ZREM', z, ref) end
  local m, rc, rp, tc, tp = roll(h, minute)
  if held == m then
    tc = math.max(0, tc + dtok)
  elseif held == m - 1 then
    tp = math.max(0, tp + dtok)
  end
  redis.call('HSET', h, 'm', m, 'rc', rc, 'rp', rp, 'tc', tc, 'tp', tp)
  local soft = tonumber(ARGV[a + 4])
  for j = 1, 3 do
    local f = 'u:' .. periods[j]
    local spent = nil
    if dusd ~= 0 then
      -- A hold from before midnight may recreate yesterday's field: the next day's sweep takes it.
      spent = tonumber(redis.call('HINCRBYFLOAT', h, f, dusd))
      if spent < 0 then redis.call('HSET', h, f, 0); spent = 0 end
    elseif ARGV[a + j] ~= '' then
      spent = tonumber(redis.call('HGET', h, f))
    end
    local limit = tonumber(ARGV[a + j])
    if spent and limit and soft and spent >= limit * soft / 100 then
      if redis.call('HSETNX', h, 'soft:' .. names[j] .. ':' .. periods[j], 1) == 1 then
        table.insert(out, {i, names[j], periods[j], tostring(spent)})
      end
    end
  end
end
return out
"""
)

RESTORE = """
-- KEYS: one hash per entry. ARGV: field, value pairs in the same order. Redis keeps what it has:
-- the fleet's spending there is more complete than one instance's ledger.
for i = 1, #KEYS do redis.call('HSETNX', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]) end
return #KEYS
"""
