-- End a session left without names, unless a write has given it one
-- since. Returns 1 when it was deleted.
-- KEYS[1] data hash
if redis.call('HLEN', KEYS[1]) <= 1 then
  return redis.call('DEL', KEYS[1])
end
return 0
