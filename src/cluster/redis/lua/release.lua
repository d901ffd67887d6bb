-- A session goes away. With the user's last session, the user goes offline.
-- KEYS: 1 the nick's sessions, 2 the nick's user hash, 3 the node's
--       registrations, 4 the channel for everyone
-- ARGV: 1 this session ('node|sid'), 2 the node registration, 3 the
--       envelope announcing the user offline ('' = none)
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[4], ARGV[3]) end
  return 1
end
return 0
