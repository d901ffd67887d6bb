-- A session leaves a room. With the user's last session there, the
-- members hear of it, and the room is no longer live when it was the last.
-- KEYS: 1 the user's sessions in the room, 2 the room's members, 3 the
--       live rooms, 4 the node's registrations, 5 the room channel
-- ARGV: 1 this session ('node|sid'), 2 the nick key, 3 the room key,
--       4 the node registration, 5 the presence envelope ('' = silent)
redis.call('SREM', KEYS[4], ARGV[4])
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  if redis.call('HLEN', KEYS[2]) == 0 then redis.call('HDEL', KEYS[3], ARGV[3]) end
  if ARGV[5] ~= '' then redis.call('PUBLISH', KEYS[5], ARGV[5]) end
  return 1
end
return 0
