-- add(key, field, delta): HINCRBY that never leaves a counter below zero, whatever happens to the
-- reservations behind it (a bug or a race must not hand a user negative usage).
local function add(key, field, delta)
  local v = redis.call('HINCRBY', key, field, delta)
  if v < 0 then redis.call('HSET', key, field, 0) end
end
