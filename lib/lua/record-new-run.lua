-- KEYS[1] record, ARGV[1] channel, ARGV[2] now, ARGV[3] force ('1'/'0'), ARGV[4] minimum age (ms)
-- of a run that force may replace. Starts a new run: bumps `run`, clears tasks and outputs, status
-- `uploaded`. A run still going is replaced only with force, and only once it is at least
-- ARGV[4] old (so repeated forcing cannot pile up work). Returns { new run, '' , 0 }, or
-- { 0, why, ms to wait } with why = missing | not_finished | in_progress | too_soon.
--! include now-ms
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 'missing', 0} end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'uploading' then return {0, 'not_finished', 0} end
if status ~= 'ready' and status ~= 'rejected' and status ~= 'failed' then
  if ARGV[3] ~= '1' then return {0, 'in_progress', 0} end
  local started = tonumber(redis.call('HGET', KEYS[1], 'run_started_ms') or '')
  if started and now_ms - started < tonumber(ARGV[4]) then return {0, 'too_soon', tonumber(ARGV[4]) - (now_ms - started)} end
end
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if string.sub(f, 1, 5) == 'task:' or string.sub(f, 1, 6) == 'thumb:' or string.sub(f, 1, 4) == 'out:' or f == 'reason' then
    redis.call('HDEL', KEYS[1], f)
  end
end
local run = redis.call('HINCRBY', KEYS[1], 'run', 1)
redis.call('HSET', KEYS[1], 'status', 'uploaded', 'updated_at', ARGV[2], 'run_started_ms', now_ms)
redis.call('PUBLISH', ARGV[1], cjson.encode({ run = run, status = 'uploaded', field = 'run' }))
return {run, '', 0}
