-- Undo a change that went over the size limits: give each name back its
-- old value, unless another write has changed it since.
-- KEYS[1] data hash
-- ARGV: (field, written, old) triples, where a value is '=' and the text,
-- or '-' for absent.
-- A session deleted or renamed since is left alone: an HSET here would
-- make a hash without meta field or TTL, that never expires.
if not redis.call('HGET', KEYS[1], '@m') then
  return 0
end
for i = 1, #ARGV, 3 do
  local field, written, old = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], field)
  if (current and ('=' .. current) or '-') == written then
    if old == '-' then
      redis.call('HDEL', KEYS[1], field)
    else
      redis.call('HSET', KEYS[1], field, string.sub(old, 2))
    end
  end
end
return 1
