-- A session comes online: claims its nick for its identity, cluster-wide.
-- KEYS: 1 the nick's sessions (set), 2 the nick's user hash, 3 the node's
--       registrations (set), 4 the channel for everyone
-- ARGV: 1 this session ('node|sid'), 2 the user id, 3 the nick as shown,
--       4 the node registration, 5 the envelope announcing the user online
--       ('' = none), 6 the user's away flag ('1' or '0') if the nick was free
-- Returns 1 if claimed, 0 if another user id holds it.
local n = redis.call('SCARD', KEYS[1])
if n > 0 and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HGET', KEYS[2], 'id') ~= ARGV[2] then
    return 0
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
if n == 0 then
  redis.call('HSET', KEYS[2], 'id', ARGV[2], 'name', ARGV[3], 'away', ARGV[6])
  if ARGV[5] ~= '' then redis.call('PUBLISH', KEYS[4], ARGV[5]) end
end
return 1
