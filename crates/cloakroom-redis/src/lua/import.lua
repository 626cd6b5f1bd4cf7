-- Put a session taken out by export.lua under its new keys. Returns 0
-- when the new id is taken (nothing written), 1 when done.
-- KEYS[1] data hash, KEYS[2] notifications hash
-- ARGV[1] ttl (ms), ARGV[2] number of data arguments (field, value...),
-- then the data arguments, then the notification arguments.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local function hset(key, from, to)
  local i = from
  while i <= to do
    local stop = math.min(i + 399, to)
    redis.call('HSET', key, unpack(ARGV, i, stop))
    i = stop + 1
  end
end
local split = 2 + tonumber(ARGV[2])
hset(KEYS[1], 3, split)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #ARGV > split then
  hset(KEYS[2], split + 1, #ARGV)
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1
