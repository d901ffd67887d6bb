-- A room's name, members (nick, view, ...) and each member's away flag.
-- KEYS: 1 the room's members, 2 the live rooms
-- ARGV: 1 the room key, 2 the key prefix
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return false end
local members = redis.call('HGETALL', KEYS[1])
local away = {}
for i = 1, #members, 2 do
  away[#away + 1] = redis.call('HGET', ARGV[2] .. ':on:' .. members[i], 'away') or '0'
end
return {name, members, away}
