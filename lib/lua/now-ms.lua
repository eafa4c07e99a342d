-- Redis's clock in ms, one clock for every tusk process (scripts are replicated by their effects).
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
