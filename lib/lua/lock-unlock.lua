-- KEYS[1] = lock key; ARGV[1] = token, ARGV[2] = released channel, ARGV[3] = id.
-- 1 if deleted (and the unlock announced), 0 if the key is not ours (expired / taken over).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
