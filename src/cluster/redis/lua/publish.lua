-- The durable step of a batch of messages, in one atomic step. For each
-- message, in order: take its conversation's next seq, append it to the
-- buffer (the log the archivers read, and the conversation's own stream
-- that history reads), and publish it to the nodes that host its
-- recipients. A channel's room messages go out in one PUBLISH at the end
-- (one envelope, or a batch envelope of several in seq order: see
-- src/cluster/envelope.rs); direct messages and messages to everyone go
-- out one by one, as they come.
-- KEYS: 1 the log stream; then three per message: its conversation's seq
--       counter, its conversation's stream, its fate (set by fence.lua
--       when its first attempt's outcome was unknown: this late attempt
--       must not store it)
-- ARGV: 1 the head of a batch envelope; then per message: the seq to
--       start from if the counter is missing ('' = ask the caller, who
--       reads it from the database), the message frame before and after
--       its seq, the envelope before and after its seq, the conversation's
--       key, the sender's user id (the frame names neither: both ride in
--       the buffer beside it), '1' for a room message ('' otherwise), the
--       number of channels, the channels
-- Returns one number per message: its seq; -2 fenced off; -3 its
-- conversation's stream refused the entry (not stored). If a counter is
-- missing and no seq to start from was given, nothing at all is written,
-- and the messages of that conversation get -1 (the others 0): the caller
-- retries the batch with the seqs to start from.
local GS = '\29'
local msgs = {}
local a = 2
for i = 1, (#KEYS - 1) / 3 do
  local k = 2 + (i - 1) * 3
  local m = {
    counter = KEYS[k], stream = KEYS[k + 1], fate = KEYS[k + 2],
    floor = ARGV[a], before = ARGV[a + 1], after = ARGV[a + 2], head = ARGV[a + 3],
    mid = ARGV[a + 4], conv = ARGV[a + 5], sender = ARGV[a + 6], room = ARGV[a + 7] == '1',
    channels = {},
  }
  local n = tonumber(ARGV[a + 8])
  for j = 1, n do
    m.channels[j] = ARGV[a + 8 + j]
  end
  a = a + 9 + n
  msgs[i] = m
end

-- Reading only: which messages are fenced off, where each counter stands.
local last = {}
local result = {}
local missing = false
for i, m in ipairs(msgs) do
  result[i] = 0
  if redis.call('EXISTS', m.fate) == 1 then
    result[i] = -2
  else
    if last[m.counter] == nil then
      local v = redis.call('GET', m.counter)
      if not v and m.floor ~= '' then
        v = m.floor
      end
      last[m.counter] = v
    end
    if not last[m.counter] then
      result[i] = -1
      missing = true
    end
  end
end
if missing then
  return result
end

local groups = {}
local order = {}
for i, m in ipairs(msgs) do
  if result[i] == 0 then
    local seq = tonumber(last[m.counter]) + 1
    local frame = m.before .. seq .. m.after
    -- The one write that can fail (an entry id not above the stream's
    -- last) comes first: a message it refuses has written nothing.
    local added = redis.pcall('XADD', m.stream, seq .. '-1', 'm', frame, 'c', m.conv, 'u', m.sender)
    if type(added) == 'table' and added.err then
      result[i] = -3
    else
      last[m.counter] = seq
      redis.call('SET', m.counter, seq)
      redis.call('XADD', KEYS[1], '*', 'm', frame, 'c', m.conv, 'u', m.sender)
      local envelope = m.head .. seq .. m.mid .. frame
      for _, c in ipairs(m.channels) do
        if m.room then
          if not groups[c] then
            groups[c] = {}
            order[#order + 1] = c
          end
          table.insert(groups[c], envelope)
        else
          redis.call('PUBLISH', c, envelope)
        end
      end
      result[i] = seq
    end
  end
end
for _, c in ipairs(order) do
  local g = groups[c]
  if #g == 1 then
    redis.call('PUBLISH', c, g[1])
  else
    redis.call('PUBLISH', c, ARGV[1] .. table.concat(g, GS))
  end
end
return result
