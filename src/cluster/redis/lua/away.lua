-- Sets a user's away flag; announces a change to everyone (watchers).
-- KEYS: 1 the nick's user hash, 2 the channel for everyone
-- ARGV: 1 '1' or '0', 2 the status envelope
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'away')
redis.call('HSET', KEYS[1], 'away', ARGV[1])
if old ~= ARGV[1] then redis.call('PUBLISH', KEYS[2], ARGV[2]) end
return 1
