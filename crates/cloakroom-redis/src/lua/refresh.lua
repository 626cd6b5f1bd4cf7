-- Push the idle deadline of a live session: the TTL of both keys and the
-- UNTIL part of the meta field. Returns 1, or 0 when the session is gone
-- (nothing is written then).
-- KEYS[1] data hash, KEYS[2] notifications hash
-- ARGV[1] now (ms), ARGV[2] the new idle deadline (ms)
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return 0
end
local created, deadline, pushed = string.match(meta, '^(%d+),(%d+),(%d+)$')
if not created or tonumber(deadline) <= tonumber(ARGV[1]) then
  return 0
end
if tonumber(ARGV[2]) > tonumber(pushed) then
  redis.call('HSET', KEYS[1], '@m', created .. ',' .. deadline .. ',' .. ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
  redis.call('PEXPIREAT', KEYS[2], ARGV[2], 'GT')
end
return 1
