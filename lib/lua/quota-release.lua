-- KEYS[1] upload hash, KEYS[2] expiring zset; ARGV[1] user-key prefix, ARGV[2] upload id
-- Returns the bytes freed, or -1 when there was no reservation.
--! include counter-add
local user = redis.call('HGET', KEYS[1], 'user')
if not user then redis.call('ZREM', KEYS[2], ARGV[2]); return -1 end
local userKey = ARGV[1] .. '{' .. user .. '}'
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
add(userKey, 'bytes', 0 - bytes)
if redis.call('HGET', KEYS[1], 'state') == 'active' then add(userKey, 'active', -1) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return bytes
