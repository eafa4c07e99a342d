-- Deletes a session lock only if it still holds this token (a lock that expired and was taken by
-- another request is not ours to delete).
-- KEYS[1] lock key; ARGV[1] token. Returns 1 if deleted, 0 if not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
