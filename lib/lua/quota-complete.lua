-- The upload finished: it keeps its bytes but no longer counts as unfinished. Returns 1, or 0 when
-- there is no active reservation (idempotent).
-- KEYS[1] upload hash, KEYS[2] expiring zset; ARGV[1] user-key prefix, ARGV[2] upload id
--! include counter-add
local user = redis.call('HGET', KEYS[1], 'user')
if not user then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'complete', 'expires_at', 0)
add(ARGV[1] .. '{' .. user .. '}', 'active', -1)
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
