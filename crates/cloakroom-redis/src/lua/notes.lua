-- Notifications kept in their own database: store some and/or follow a
-- rename of their session.
-- KEYS[1] notifications hash, KEYS[2] renamed notifications hash
-- ARGV[1] ttl (ms), ARGV[2] '1' to rename, then (field, value) pairs.
local key = KEYS[1]
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    key = KEYS[2]
  else
    redis.call('RENAME', KEYS[1], KEYS[2])
    key = KEYS[2]
  end
end
if #ARGV > 2 then
  redis.call('HSET', key, unpack(ARGV, 3))
end
if redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, ARGV[1])
end
return 1
