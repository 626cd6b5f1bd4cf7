-- Admit a session to its user's index under the cap, atomically.
-- KEYS[1] the user's index: a sorted set of session ids scored by an
--         upper bound of their absolute deadline (ms)
-- ARGV[1] now (ms), ARGV[2] the session id, ARGV[3] its score,
-- ARGV[4] the cap (0: none), ARGV[5] 'add', 'check', or 'evict' (add,
-- ending the given ids, then if still full the earliest admitted),
-- ARGV[6] how many ids follow that the caller found dead, then those ids,
-- then the ids the caller would end to make room, least recently used
-- first.
-- Returns {1, ended ids, index size} when admitted (or admissible, for
-- 'check'), or
-- {0, members} when the index is full: the caller checks which members
-- are alive, and asks again.
local index = KEYS[1]
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[1])
local ngone = tonumber(ARGV[6])
for i = 7, 6 + ngone do
  redis.call('ZREM', index, ARGV[i])
end
local cap = tonumber(ARGV[4])
local evict = ARGV[5] == 'evict'
local add = ARGV[5] == 'add' or evict
local ended = {}
if cap > 0 and not redis.call('ZSCORE', index, ARGV[2]) then
  local n = redis.call('ZCARD', index)
  local v = 7 + ngone
  while n >= cap and v <= #ARGV do
    if add and redis.call('ZREM', index, ARGV[v]) == 1 then
      ended[#ended + 1] = ARGV[v]
      n = n - 1
    elseif not add then
      n = n - 1
    end
    v = v + 1
  end
  -- The caller's list was stale (other sign-ins changed the index since
  -- it looked): the earliest admitted make room instead, so an eviction
  -- always settles in this call.
  while evict and n >= cap do
    local oldest = redis.call('ZRANGE', index, 0, 0)[1]
    redis.call('ZREM', index, oldest)
    ended[#ended + 1] = oldest
    n = n - 1
  end
  if n >= cap then
    return {0, redis.call('ZRANGE', index, 0, -1)}
  end
end
if add then
  redis.call('ZADD', index, ARGV[3], ARGV[2])
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, last[2])
end
return {1, ended, redis.call('ZCARD', index)}
