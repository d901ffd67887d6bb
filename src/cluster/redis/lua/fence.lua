-- Settles a message whose publish had an unknown outcome (the connection
-- broke or timed out while the script was under way): if it is in its
-- conversation's buffer it was stored (returns its seq); if not, a fate
-- mark makes any late run of that publish a no-op (returns 0), and the
-- caller looks in the database (the archiver may have moved it there).
-- KEYS: 1 the conversation stream, 2 the message's fate
-- ARGV: 1 the msg_id, 2 how long the mark lives (seconds)
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'm' and string.find(fields[i + 1], ARGV[1], 1, true) then
      return tonumber(string.match(entry[1], '^(%d+)'))
    end
  end
end
redis.call('SET', KEYS[2], 'x', 'EX', ARGV[2])
return 0
