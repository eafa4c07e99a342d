-- KEYS[1] = lock key; ARGV[1] = token, ARGV[2] = ttl ms. 1 if renewed, 0 if not ours (any more).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
