-- KEYS[1] user hash, KEYS[2] upload hash, KEYS[3] expiring zset, KEYS[4..] replaced upload hashes
-- ARGV[1] user id, ARGV[2] upload id, ARGV[3] bytes, ARGV[4] quota, ARGV[5] max concurrent,
-- ARGV[6] expires_at, ARGV[7] complete (0/1), ARGV[8..] replaced upload ids
-- Returns {1, 'ok'} | {0, code, used, limit}
--! include counter-add
local existing = redis.call('HGET', KEYS[2], 'user')
if existing then
  if existing == ARGV[1] then return {1, 'ok'} end
  return {0, 'conflict', 0, 0}
end
local bytes = tonumber(ARGV[3])
local used = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local active = tonumber(redis.call('HGET', KEYS[1], 'active') or '0')
local freedBytes, freedActive = 0, 0
for i = 4, #KEYS do
  if redis.call('HGET', KEYS[i], 'user') == ARGV[1] then
    freedBytes = freedBytes + tonumber(redis.call('HGET', KEYS[i], 'bytes') or '0')
    if redis.call('HGET', KEYS[i], 'state') == 'active' then freedActive = freedActive + 1 end
  end
end
local complete = ARGV[7] == '1'
local maxActive = tonumber(ARGV[5])
if not complete and maxActive > 0 and active - freedActive + 1 > maxActive then
  return {0, 'too_many_uploads', active - freedActive, maxActive}
end
local quota = tonumber(ARGV[4])
if quota > 0 and bytes > 0 and used - freedBytes + bytes > quota then
  return {0, 'quota_exceeded', used - freedBytes, quota}
end
for i = 4, #KEYS do
  if redis.call('HGET', KEYS[i], 'user') == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[3], ARGV[4 + i])
  end
end
local state = 'active'
if complete then state = 'complete' end
redis.call('HSET', KEYS[2], 'user', ARGV[1], 'bytes', bytes, 'state', state, 'expires_at', ARGV[6])
add(KEYS[1], 'bytes', bytes - freedBytes)
local deltaActive = 0 - freedActive -- never -0: HINCRBY refuses "-0"
if not complete then deltaActive = deltaActive + 1 end
add(KEYS[1], 'active', deltaActive)
if not complete and tonumber(ARGV[6]) > 0 then redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2]) end
return {1, 'ok'}
