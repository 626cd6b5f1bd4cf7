-- Apply a patch atomically. Returns {1, ttl ms} when applied, {0} when
-- nothing was written because the session is gone (or the id is taken),
-- {2, names} or {3, bytes} when the patch would go over a size limit (and
-- nothing was written), {4} when it was applied and left the session
-- empty, which flag 'e' asks to end (then it is deleted), {5, ttl} when
-- it was applied and left no names, which flag 'E' asks to report (the
-- notifications live in another database, where the caller looks).
-- KEYS[1] data hash, KEYS[2] notifications hash,
-- KEYS[3] renamed data hash, KEYS[4] renamed notifications hash
-- ARGV[1] now (ms), ARGV[2] idle (ms), ARGV[3] absolute (ms)
-- ARGV[4] flags: 'c' create, 'x' clear, 'r' rename, 'l' restart the
-- absolute lifetime (deadline = now + ARGV[3]), 'e' end if empty,
-- 'E' report no names left
-- ARGV[5] #sets, ARGV[6] #removals, ARGV[7] #notifications,
-- ARGV[8] most names (-1: no limits), ARGV[9] most bytes,
-- then the sets (field, value), the removals (field), the notifications
-- (field, value).
--
-- Every redis.call costs; the common write makes three (HGETALL or HGET,
-- HSET, PEXPIRE), a create three (EXISTS, HSET, PEXPIRE).
local function int(n) return string.format('%d', n) end
local now = tonumber(ARGV[1])
local flags = ARGV[4]
local create = string.find(flags, 'c', 1, true) ~= nil
local clear = string.find(flags, 'x', 1, true) ~= nil
local rename = string.find(flags, 'r', 1, true) ~= nil
local restart = string.find(flags, 'l', 1, true) ~= nil
local end_if_empty = string.find(flags, 'e', 1, true) ~= nil
local report_empty = string.find(flags, 'E', 1, true) ~= nil
local nset = tonumber(ARGV[5])
local ndel = tonumber(ARGV[6])
local nnote = tonumber(ARGV[7])
local max_names = tonumber(ARGV[8])
local check = max_names >= 0 and nset > 0

-- The meta field: 'CREATED,DEADLINE,UNTIL' (ms), the last two counted
-- from CREATED. Returns the creation time and the absolute deadline.
local function meta_of(m)
  local c, d = string.match(m or '', '^(%d+),(%d+),%d+$')
  if not c then
    return nil, nil
  end
  return tonumber(c), tonumber(c) + tonumber(d)
end

local deadline, created
local size = {}
if create then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {0}
  end
  created = now
  deadline = now + tonumber(ARGV[3])
elseif check and not clear then
  -- One read gives the deadline and the sizes the limits need.
  local fields = redis.call('HGETALL', KEYS[1])
  for j = 1, #fields, 2 do
    local f = fields[j]
    if f == '@m' then
      created, deadline = meta_of(fields[j + 1])
    else
      size[f] = #f + #fields[j + 1]
    end
  end
else
  created, deadline = meta_of(redis.call('HGET', KEYS[1], '@m'))
end
if deadline == nil or deadline <= now then
  return {0}
end
if rename and redis.call('EXISTS', KEYS[3]) == 1 then
  return {0}
end
if restart then
  deadline = now + tonumber(ARGV[3])
end

local sets, dels, notes = 10, 10 + 2 * nset, 10 + 2 * nset + ndel
if check then
  for j = sets, dels - 1, 2 do
    size[ARGV[j]] = #ARGV[j] + #ARGV[j + 1]
  end
  for j = dels, notes - 1 do
    size[ARGV[j]] = nil
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
  redis.call('DEL', KEYS[1])
end

-- Calls a command on `key` with ARGV[from..to], in batches that stay under
-- Lua's limit on unpack(); `head` (meta fields) goes in the first batch.
local function batched(cmd, key, from, to, width, head)
  local args = head or {}
  local i = from
  while i <= to or #args > 0 do
    local stop = math.min(i + 200 * width - 1, to)
    for j = i, stop do
      args[#args + 1] = ARGV[j]
    end
    redis.call(cmd, key, unpack(args))
    args = {}
    i = stop + 1
  end
end

local ttl = math.min(tonumber(ARGV[2]), deadline - now)
-- The meta field rides along whenever the hash is written anyway, so the
-- next read knows the TTL was just pushed.
if create or clear or restart or nset > 0 then
  local meta = int(created) .. ',' .. int(deadline - created) .. ',' .. int(now + ttl - created)
  batched('HSET', KEYS[1], sets, dels - 1, 2, {'@m', meta})
end
if ndel > 0 then
  batched('HDEL', KEYS[1], dels, notes - 1, 1)
end
if nnote > 0 then
  batched('HSET', KEYS[2], notes, notes + 2 * nnote - 1, 2)
  redis.call('PEXPIRE', KEYS[2], int(ttl))
end

-- Only the meta field left, and no notifications: the session ends.
if end_if_empty and redis.call('HLEN', KEYS[1]) <= 1
    and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return {4}
end

local data = KEYS[1]
if rename then
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[4])
  end
  data = KEYS[3]
end
redis.call('PEXPIRE', data, int(ttl))
if report_empty and not rename and redis.call('HLEN', data) <= 1 then
  return {5, ttl}
end
return {1, ttl}
