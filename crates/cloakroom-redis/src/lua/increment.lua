-- Add to an integer field atomically, and push the idle deadline.
-- Returns {1, value}, {0} when the session is gone, {2} when the field
-- does not hold an integer.
-- KEYS[1] data hash, KEYS[2] notifications hash
-- ARGV[1] field, ARGV[2] amount, ARGV[3] now (ms), ARGV[4] idle (ms)
-- The absolute deadline in the meta field 'CREATED,DEADLINE,UNTIL' (ms,
-- the last two counted from CREATED); nil without one.
local function deadline_of(m)
  local c, d = string.match(m or '', '^(%d+),(%d+),%d+$')
  return c and tonumber(c) + tonumber(d)
end
local function int(n) return string.format('%d', n) end
local now = tonumber(ARGV[3])
local deadline = deadline_of(redis.call('HGET', KEYS[1], '@m'))
if deadline == nil or deadline <= now then
  return {0}
end
local ok, value = pcall(redis.call, 'HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if not ok then
  local message = type(value) == 'table' and value.err or tostring(value)
  if not string.find(message, 'overflow', 1, true) then
    return {2}
  end
  -- Past 64 bits: the bound, as the other stores saturate.
  if tonumber(ARGV[2]) > 0 then
    value = '9223372036854775807'
  else
    value = '-9223372036854775808'
  end
  redis.call('HSET', KEYS[1], ARGV[1], value)
elseif value >= 9007199254740992 or value <= -9007199254740992 then
  -- Lua's numbers are doubles, exact below 2^53: past that, the stored
  -- text is the exact value.
  value = redis.call('HGET', KEYS[1], ARGV[1])
end
local ttl = math.min(tonumber(ARGV[4]), deadline - now)
redis.call('PEXPIRE', KEYS[1], int(ttl))
redis.call('PEXPIRE', KEYS[2], int(ttl))
return {1, value}
