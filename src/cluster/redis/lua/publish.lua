-- The durable step of a batch of messages, in one atomic step. For each
-- message, in order: take its conversation's next seq, append it to its
-- conversation's own stream (the one history reads), and publish it to the
-- nodes that host its recipients. The batch's stored messages go into the
-- log stream (the one the archivers read) as one entry, in order: fields
-- m, c, u for the first (its frame, conversation key and sender id), then
-- m1, c1, u1, m2, ... (see `buffer::log_messages`). A channel's room
-- messages go out in one PUBLISH (one envelope, or a batch envelope of
-- several in seq order: see src/cluster/envelope.rs); direct messages and
-- messages to everyone go out one by one, in order. Every write comes
-- before every PUBLISH: each counter is set once, to its conversation's
-- last seq, then the log entry is added, then the messages go out.
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
local count = (#KEYS - 1) / 3
-- Where each message's arguments start in ARGV (no table per message).
local at = {}
local a = 2
for i = 1, count do
  at[i] = a
  a = a + 9 + tonumber(ARGV[a + 8])
end

-- Reading only: which messages are fenced off (rare: one EXISTS for the
-- batch, then one per message only if any is), where each counter stands.
local fates = {}
for i = 1, count do
  fates[i] = KEYS[i * 3 + 1]
end
local fenced = count > 0 and redis.call('EXISTS', unpack(fates)) > 0
local last = {}
local result = {}
local missing = false
for i = 1, count do
  result[i] = 0
  local counter = KEYS[i * 3 - 1]
  if fenced and redis.call('EXISTS', fates[i]) == 1 then
    result[i] = -2
  else
    if last[counter] == nil then
      local v = redis.call('GET', counter)
      local floor = ARGV[at[i]]
      if not v and floor ~= '' then
        v = floor
      end
      last[counter] = v
    end
    if not last[counter] then
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
local direct = {}
local log = {}
-- The counters to set, each once, in first-use order: counters[1..n] are
-- their keys, and counters[key] = true marks one as listed (the array part
-- is what ipairs walks below; the hash part never shows there).
local counters = {}
local logged = 0
for i = 1, count do
  if result[i] == 0 then
    local counter = KEYS[i * 3 - 1]
    local base = at[i]
    local conv, sender = ARGV[base + 5], ARGV[base + 6]
    local seq = tonumber(last[counter]) + 1
    local s = tostring(seq)
    local frame = ARGV[base + 1] .. s .. ARGV[base + 2]
    -- The one write that can fail (an entry id not above the stream's
    -- last) comes first: a message it refuses has written nothing.
    local added = redis.pcall('XADD', KEYS[i * 3], s .. '-1', 'm', frame, 'c', conv, 'u', sender)
    if type(added) == 'table' and added.err then
      result[i] = -3
    else
      if not counters[counter] then
        counters[#counters + 1] = counter
        counters[counter] = true
      end
      last[counter] = s
      local tag = logged == 0 and '' or tostring(logged)
      logged = logged + 1
      local n = #log
      log[n + 1] = 'm' .. tag
      log[n + 2] = frame
      log[n + 3] = 'c' .. tag
      log[n + 4] = conv
      log[n + 5] = 'u' .. tag
      log[n + 6] = sender
      local envelope = ARGV[base + 3] .. s .. ARGV[base + 4] .. frame
      local room = ARGV[base + 7] == '1'
      for j = 1, tonumber(ARGV[base + 8]) do
        local c = ARGV[base + 8 + j]
        if room then
          local g = groups[c]
          if not g then
            g = {}
            groups[c] = g
            order[#order + 1] = c
          end
          g[#g + 1] = envelope
        else
          direct[#direct + 1] = {c, envelope}
        end
      end
      result[i] = seq
    end
  end
end
for _, k in ipairs(counters) do
  redis.call('SET', k, last[k])
end
-- One XADD takes the whole batch (six fields a message), through one
-- unpack: Lua unpacks at most about 8000 values ("too many results to
-- unpack", and the writes above would stay), so a batch must stay well
-- under 1333 messages: cluster.publish_batch is at most 1000 (config.rs).
if #log > 0 then
  redis.call('XADD', KEYS[1], '*', unpack(log))
end
for _, d in ipairs(direct) do
  redis.call('PUBLISH', d[1], d[2])
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
