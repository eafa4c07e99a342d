-- KEYS[1] record, ARGV[1] run ('' = any), ARGV[2] channel, ARGV[3] now, ARGV[4..] field, value...
-- A write with a `status` field is dropped whole when the record already has a terminal status
-- (so the first outcome of a run, with its reason, stays). Returns
-- { applied (0/1), status changed to the given value (0/1) }.
local run = redis.call('HGET', KEYS[1], 'run')
if not run then return {0, 0} end
if ARGV[1] ~= '' and run ~= ARGV[1] then return {0, 0} end
local current = redis.call('HGET', KEYS[1], 'status')
local terminal = current == 'ready' or current == 'rejected' or current == 'failed'
if terminal then
  -- A status change (and whatever comes with it: reason, ...) never overrides a run's outcome.
  for i = 4, #ARGV, 2 do
    if ARGV[i] == 'status' then return {1, 0} end
  end
end
local changed = 0
local args = {}
for i = 4, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if f == 'status' then
    if not terminal and current ~= v then table.insert(args, f); table.insert(args, v); changed = 1 end
  else
    table.insert(args, f); table.insert(args, v)
  end
end
if #args == 0 then return {1, 0} end
table.insert(args, 'updated_at'); table.insert(args, ARGV[3])
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PUBLISH', ARGV[2], cjson.encode({ run = tonumber(run), status = redis.call('HGET', KEYS[1], 'status'), field = args[1] }))
return {1, changed}
