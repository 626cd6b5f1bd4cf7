-- Push the idle deadline of a live session: the TTL of both keys and the
-- UNTIL part of the meta field. Returns 1, or 0 when the session is gone
-- (nothing is written then).
-- KEYS[1] data hash, KEYS[2] notifications hash
-- ARGV[1] now (ms), ARGV[2] the new idle deadline (ms)
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return 0
end
-- 'CREATED,DEADLINE,UNTIL', the last two counted from CREATED.
local created, deadline, pushed = string.match(meta, '^(%d+),(%d+),(%d+)$')
if not created then
  return 0
end
local base = tonumber(created)
if base + tonumber(deadline) <= tonumber(ARGV[1]) then
  return 0
end
if tonumber(ARGV[2]) > base + tonumber(pushed) then
  local offset = string.format('%d', tonumber(ARGV[2]) - base)
  redis.call('HSET', KEYS[1], '@m', created .. ',' .. deadline .. ',' .. offset)
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
  redis.call('PEXPIREAT', KEYS[2], ARGV[2], 'GT')
end
return 1
