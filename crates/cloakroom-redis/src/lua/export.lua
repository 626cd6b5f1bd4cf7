-- Take a session out, to move it to another slot (Redis Cluster renames).
-- Returns {0} when it is gone, else {1, ttl ms, data fields, notifications}
-- after deleting both keys.
-- KEYS[1] data hash, KEYS[2] notifications hash
local data = redis.call('HGETALL', KEYS[1])
if #data == 0 then
  return {0}
end
local notes = redis.call('HGETALL', KEYS[2])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return {1, ttl, data, notes}
