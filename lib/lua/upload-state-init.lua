-- KEYS[1]=main KEYS[2]=parts. ARGV: ttlMs, info, nparts, bytes, tail, done, then (n, value) pairs.
-- Creates the state only if it does not exist yet (a rebuild must not overwrite newer state).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'info', ARGV[2], 'nparts', ARGV[3], 'bytes', ARGV[4], 'tail', ARGV[5], 'done', ARGV[6])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #ARGV >= 7 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
