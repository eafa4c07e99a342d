-- KEYS[1] upload hash, ARGV[1] user-key prefix (before '{'), ARGV[2] new bytes, ARGV[3] quota,
-- ARGV[4] grow only (1: never shrink the reservation)
-- Returns {1,'ok'} | {0,'not_found'} | {0,'quota_exceeded', used, quota}
--! include counter-add
local user = redis.call('HGET', KEYS[1], 'user')
if not user then return {0, 'not_found', 0, 0} end
local userKey = ARGV[1] .. '{' .. user .. '}'
local old = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local new = tonumber(ARGV[2])
if ARGV[4] == '1' and new < old then return {1, 'ok'} end
local used = tonumber(redis.call('HGET', userKey, 'bytes') or '0')
local quota = tonumber(ARGV[3])
if new > old and quota > 0 and used - old + new > quota then
  return {0, 'quota_exceeded', used - old, quota}
end
redis.call('HSET', KEYS[1], 'bytes', new)
add(userKey, 'bytes', new - old)
return {1, 'ok'}
