-- A session enters a room. With the user's first session there, the
-- members hear of it. Returns whether it was the first, the room's seq
-- counter, its members (nick, view, ...) and each member's away flag.
-- KEYS: 1 the user's sessions in the room (set), 2 the room's members
--       (hash nick -> view), 3 the live rooms (hash key -> name), 4 the
--       node's registrations, 5 the room's seq counter, 6 the room channel
-- ARGV: 1 this session ('node|sid'), 2 the nick key, 3 the member view,
--       4 the room key, 5 the room name, 6 the node registration, 7 the
--       presence envelope ('' = silent), 8 the key prefix
local first = 0
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then
  first = 1
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  if ARGV[7] ~= '' then redis.call('PUBLISH', KEYS[6], ARGV[7]) end
end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5])
redis.call('SADD', KEYS[4], ARGV[6])
local seq = redis.call('GET', KEYS[5]) or '0'
local members = redis.call('HGETALL', KEYS[2])
local away = {}
for i = 1, #members, 2 do
  away[#away + 1] = redis.call('HGET', ARGV[8] .. ':on:' .. members[i], 'away') or '0'
end
return {first, seq, members, away}
