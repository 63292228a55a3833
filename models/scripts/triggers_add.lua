-- Append fired triggers to the triggers stream, each at most once: a trigger id seen in the
-- last ARGV[2] seconds is skipped (a run restarted from a snapshot fires it again).
-- KEYS   the triggers stream, then one "sent" marker key per trigger (same hash tag)
-- ARGV   maxlen (approximate), ttl_s, then per trigger: id, type, customer id, JSON document
-- returns one flag per trigger: 1 appended, 0 seen before
local added = {}
for i = 2, #KEYS do
  local a = 3 + (i - 2) * 4
  if redis.call("SET", KEYS[i], "1", "NX", "EX", ARGV[2]) then
    redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
               "id", ARGV[a], "type", ARGV[a + 1], "customer_id", ARGV[a + 2], "data", ARGV[a + 3])
    added[i - 1] = 1
  else
    added[i - 1] = 0
  end
end
return added
