-- Take a notification: return it and remove it, atomically.
-- KEYS[1] data hash (nil-safe: only checked when given), KEYS[2] notifications hash
-- ARGV[1] field, ARGV[2] now (ms), ARGV[3] '1' to require a live session
if ARGV[3] == '1' then
  local deadline = tonumber(string.match(redis.call('HGET', KEYS[1], '@m') or '', '^%d+,(%d+),%d+$'))
  if deadline == nil or deadline <= tonumber(ARGV[2]) then
    return false
  end
end
local value = redis.call('HGET', KEYS[2], ARGV[1])
if value then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return value
