-- Load a session, and push its idle deadline forward when due.
-- KEYS[1] data hash, KEYS[2] notifications hash
-- ARGV[1] now (ms), ARGV[2] idle (ms), ARGV[3] refresh slice (ms)
local function int(n) return string.format('%d', n) end
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return fields
end
local now = tonumber(ARGV[1])
local deadline = tonumber(redis.call('HGET', KEYS[1], '@d'))
if deadline == nil or deadline <= now then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {}
end
local target = math.min(now + tonumber(ARGV[2]), deadline) - now
local pttl = redis.call('PTTL', KEYS[1])
if pttl >= 0 and pttl + tonumber(ARGV[3]) < target then
  redis.call('PEXPIRE', KEYS[1], int(target))
  redis.call('PEXPIRE', KEYS[2], int(target))
end
return fields
