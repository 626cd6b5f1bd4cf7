-- Apply a patch atomically. Returns {1, ttl ms} when applied, {0} when
-- nothing was written because the session is gone (or the id is taken),
-- {2, names} or {3, bytes} when the patch would go over a size limit (and
-- nothing was written).
-- KEYS[1] data hash, KEYS[2] notifications hash,
-- KEYS[3] renamed data hash, KEYS[4] renamed notifications hash
-- ARGV[1] now (ms), ARGV[2] idle (ms), ARGV[3] absolute (ms)
-- ARGV[4] flags: 'c' create, 'x' clear, 'r' rename
-- ARGV[5] #sets, ARGV[6] #removals, ARGV[7] #notifications,
-- ARGV[8] most names (-1: no limits), ARGV[9] most bytes,
-- then the sets (field, value), the removals (field), the notifications
-- (field, value).
local function int(n) return string.format('%d', n) end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local flags = ARGV[4]
local create = string.find(flags, 'c', 1, true) ~= nil
local clear = string.find(flags, 'x', 1, true) ~= nil
local rename = string.find(flags, 'r', 1, true) ~= nil

local deadline = tonumber(redis.call('HGET', KEYS[1], '@d'))
if deadline ~= nil and deadline <= now then
  redis.call('DEL', KEYS[1], KEYS[2])
  deadline = nil
end
local created = nil
if create then
  if deadline ~= nil or redis.call('EXISTS', KEYS[1]) == 1 then
    return {0}
  end
  deadline = now + tonumber(ARGV[3])
  created = now
elseif deadline == nil then
  return {0}
end
if rename and redis.call('EXISTS', KEYS[3]) == 1 then
  return {0}
end
-- Size limits, checked on the projected contents before any write.
local nset = tonumber(ARGV[5])
local ndel = tonumber(ARGV[6])
local max_names = tonumber(ARGV[8])
if max_names >= 0 and nset > 0 then
  local size = {}
  if not clear then
    local fields = redis.call('HGETALL', KEYS[1])
    for j = 1, #fields, 2 do
      local f = fields[j]
      if f ~= '@c' and f ~= '@d' then
        size[f] = #f + #fields[j + 1]
      end
    end
  end
  local j = 10
  for _ = 1, nset do
    size[ARGV[j]] = #ARGV[j] + #ARGV[j + 1]
    j = j + 2
  end
  for _ = 1, ndel do
    size[ARGV[j]] = nil
    j = j + 1
  end
  local names, bytes = 0, 0
  for _, n in pairs(size) do
    names = names + 1
    bytes = bytes + n
  end
  if names > max_names then
    return {2, names}
  end
  if bytes > tonumber(ARGV[9]) then
    return {3, bytes}
  end
end

if clear then
  created = redis.call('HGET', KEYS[1], '@c') or now
  redis.call('DEL', KEYS[1])
end

-- Batched so a big patch stays under Lua's limit on unpack().
local function batched(cmd, key, from, count, width)
  local i = from
  local last = from + count * width - 1
  while i <= last do
    local stop = math.min(i + 200 * width - 1, last)
    redis.call(cmd, key, unpack(ARGV, i, stop))
    i = stop + 1
  end
  return i
end

if created ~= nil then
  redis.call('HSET', KEYS[1], '@c', int(created), '@d', int(deadline))
end
local i = 10
i = batched('HSET', KEYS[1], i, nset, 2)
i = batched('HDEL', KEYS[1], i, ndel, 1)
batched('HSET', KEYS[2], i, tonumber(ARGV[7]), 2)

local data, notes = KEYS[1], KEYS[2]
if rename then
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[4])
  end
  data, notes = KEYS[3], KEYS[4]
end
local ttl = math.min(idle, deadline - now)
redis.call('PEXPIRE', data, int(ttl))
redis.call('PEXPIRE', notes, int(ttl))
return {1, ttl}
