-- The end of a held decision (`decision_read.lua`): record the contact it served, if any,
-- and release the hold if it is still this decision's.
-- KEYS[1]  the customer's contacts sorted set, KEYS[2] the customer's hold key
-- ARGV     token, now_ms, keep_ms (the longest cap window), member ("channel|message|decision",
--          or "" when nothing was served)
-- returns  1 if the hold was still this decision's, 0 if it had expired (longer than its TTL)
if ARGV[4] ~= "" then
  local keep = tonumber(ARGV[3])
  local now = tonumber(ARGV[2])
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", "(" .. (now - keep))
  redis.call("ZADD", KEYS[1], now, ARGV[4])
  redis.call("PEXPIRE", KEYS[1], keep)
end
if redis.call("GET", KEYS[2]) == ARGV[1] then
  redis.call("DEL", KEYS[2])
  return 1
end
return 0
