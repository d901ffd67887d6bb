-- A room is destroyed: its buffered messages must never reach the database
-- (the room's rows are being deleted) nor any history. The seq counter
-- stays (seqs never go back), and the archiver drops log entries of the
-- conversation at or below the mark.
-- KEYS: 1 the seq counter, 2 the conversation stream, 3 the mark
-- Returns the mark.
local last = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', KEYS[3], last)
redis.call('DEL', KEYS[2])
return tonumber(last)
