-- A node says it is alive (on Redis's clock, so nodes' clocks may differ).
-- Returns whether it was known (a node that was taken for dead must
-- register its sessions again), then the nodes silent for too long.
-- KEYS: 1 the nodes (sorted set node -> last heartbeat, ms)
-- ARGV: 1 this node, 2 how long a node may be silent (ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
return {known, dead}
