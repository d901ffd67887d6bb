-- Removes a node's sessions from everything (the node died, or leaves at
-- shutdown), or with ARGV 4 = 'prune' only the registrations not listed
-- after it (the node's own view after an outage: what it no longer hosts).
-- Returns the rooms its users left (key, name, nick as shown, flattened)
-- and the nicks that went offline, for the caller to announce. Does nothing
-- if the node has heartbeaten since it was found silent (ARGV 3 = -1:
-- regardless).
-- KEYS: 1 the nodes, 2 the node's registrations
-- ARGV: 1 the key prefix, 2 the node, 3 how long a node may be silent (ms),
--       4 'all' or 'prune', 5.. the registrations to keep (prune)
local p, node, timeout = ARGV[1], ARGV[2], tonumber(ARGV[3])
local prune = ARGV[4] == 'prune'
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
if timeout >= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = redis.call('ZSCORE', KEYS[1], node)
  if last and now - tonumber(last) <= timeout then return {{}, {}} end
end
local left, offline = {}, {}
for _, e in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local kind, a, b, c = string.match(e, '^(%a)|([^|]*)|([^|]*)|?([^|]*)$')
  if keep[e] then kind = nil elseif prune then redis.call('SREM', KEYS[2], e) end
  if kind == 'm' then
    -- m|room key|nick as shown|sid
    local nick = string.lower(b)
    local sessions = p .. ':rs:' .. a .. ':' .. nick
    if redis.call('SREM', sessions, node .. '|' .. c) == 1 and redis.call('SCARD', sessions) == 0 then
      local members = p .. ':rm:' .. a
      redis.call('HDEL', members, nick)
      local name = redis.call('HGET', p .. ':rooms', a) or a
      if redis.call('HLEN', members) == 0 then redis.call('HDEL', p .. ':rooms', a) end
      left[#left + 1] = a
      left[#left + 1] = name
      left[#left + 1] = b
    end
  elseif kind == 'o' then
    -- o|nick as shown|sid
    local nick = string.lower(a)
    local sessions = p .. ':os:' .. nick
    if redis.call('SREM', sessions, node .. '|' .. b) == 1 and redis.call('SCARD', sessions) == 0 then
      redis.call('DEL', p .. ':on:' .. nick)
      offline[#offline + 1] = a
    end
  end
end
if not prune then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], node)
end
return {left, offline}
