-- KEYS[1] record, ARGV[1] channel, ARGV[2] now, ARGV[3] base JSON, ARGV[4] status, ARGV[5] TTL ms
-- Creates the record (run 1) unless it exists; an `uploading` record becomes `uploaded` with the
-- new base. `uploading` records expire (an upload that never finishes leaves nothing behind);
-- from `uploaded` on they are kept. Returns the run.
--! include now-ms
local run = redis.call('HGET', KEYS[1], 'run')
if run then
  if ARGV[4] == 'uploaded' and redis.call('HGET', KEYS[1], 'status') == 'uploading' then
    local base = cjson.decode(ARGV[3])
    local old = cjson.decode(redis.call('HGET', KEYS[1], 'base'))
    base.created_at = old.created_at
    redis.call('HSET', KEYS[1], 'status', 'uploaded', 'base', cjson.encode(base), 'updated_at', ARGV[2], 'run_started_ms', now_ms)
    redis.call('PERSIST', KEYS[1])
    redis.call('PUBLISH', ARGV[1], cjson.encode({ run = tonumber(run), status = 'uploaded', field = 'status' }))
  end
  return tonumber(run)
end
redis.call('HSET', KEYS[1], 'run', 1, 'status', ARGV[4], 'base', ARGV[3], 'updated_at', ARGV[2])
if ARGV[4] == 'uploading' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) else redis.call('HSET', KEYS[1], 'run_started_ms', now_ms) end
redis.call('PUBLISH', ARGV[1], cjson.encode({ run = 1, status = ARGV[4], field = 'status' }))
return 1
