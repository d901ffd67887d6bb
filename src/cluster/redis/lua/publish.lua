-- The durable step of a message, in one atomic step: take the
-- conversation's next seq, append the message to the buffer (the log the
-- archivers read, and the conversation's own stream that history reads),
-- and publish it to the nodes that host its recipients.
-- KEYS: 1 seq counter, 2 log stream, 3 conversation stream, 4 the
--       message's fate (set by fence.lua when its first attempt's outcome
--       was unknown: this late attempt must not run)
-- ARGV: 1 the seq to start from if the counter is missing ('' = ask the
--       caller, who reads it from the database), 2 and 3 the message frame
--       before and after its seq, 4 and 5 the envelope before and after
--       its seq, 6 the conversation's key, 7 the sender's user id (the
--       frame names neither: both ride in the buffer beside it), 8.. the
--       channels
-- Returns the seq; -1: the counter is missing; -2: fenced off.
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
local last = redis.call('GET', KEYS[1])
if not last then
  if ARGV[1] == '' then return -1 end
  last = ARGV[1]
end
local seq = tonumber(last) + 1
local frame = ARGV[2] .. seq .. ARGV[3]
-- The one write that can fail (an entry id not above the stream's last)
-- comes first: a failed script then has written nothing.
redis.call('XADD', KEYS[3], seq .. '-1', 'm', frame, 'c', ARGV[6], 'u', ARGV[7])
redis.call('SET', KEYS[1], seq)
redis.call('XADD', KEYS[2], '*', 'm', frame, 'c', ARGV[6], 'u', ARGV[7])
local envelope = ARGV[4] .. seq .. ARGV[5] .. frame
for i = 8, #ARGV do
  redis.call('PUBLISH', ARGV[i], envelope)
end
return seq
