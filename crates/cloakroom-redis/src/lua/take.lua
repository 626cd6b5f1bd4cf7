-- Take a notification: return it and remove it, atomically.
-- KEYS[1] data hash (nil-safe: only checked when given), KEYS[2] notifications hash
-- ARGV[1] field, ARGV[2] now (ms), ARGV[3] '1' to require a live session
-- The absolute deadline in the meta field 'CREATED,DEADLINE,UNTIL' (ms,
-- the last two counted from CREATED); nil without one.
local function deadline_of(m)
  local c, d = string.match(m or '', '^(%d+),(%d+),%d+$')
  return c and tonumber(c) + tonumber(d)
end
if ARGV[3] == '1' then
  local deadline = deadline_of(redis.call('HGET', KEYS[1], '@m'))
  if deadline == nil or deadline <= tonumber(ARGV[2]) then
    return false
  end
end
local value = redis.call('HGET', KEYS[2], ARGV[1])
if value then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return value
