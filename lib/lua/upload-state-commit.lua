-- KEYS[1]=main KEYS[2]=parts. ARGV: ttlMs, expected nparts, bytes, tail, local, holder,
-- new nparts, bytes, tail, local, holder, then (n, value) pairs of the newly committed parts.
-- 1 = applied, 0 = state gone (rebuilt from S3 later), -1 = state changed under us (two writers).
local cur = redis.call('HMGET', KEYS[1], 'nparts', 'bytes', 'tail', 'done', 'local', 'holder')
if not cur[1] then return 0 end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] or cur[3] ~= ARGV[4] or cur[4] == '1'
  or (cur[5] or '0') ~= ARGV[5] or (cur[6] or '') ~= ARGV[6] then return -1 end
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'nparts', ARGV[7], 'bytes', ARGV[8], 'tail', ARGV[9], 'local', ARGV[10], 'holder', ARGV[11])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
