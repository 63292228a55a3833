-- Record a served message if the caps and the message's cooldown still allow it: atomically,
-- so that concurrent decisions for one customer cannot exceed them (the dataflow's triggers).
-- KEYS[1]  the customer's contacts sorted set (score: ms; member: channel|message|decision)
-- KEYS[2]  the customer's decision hold (`decision_read.lua`): while an API decision holds
--          it, nothing is recorded and the answer is {"busy", ""} (try again in a moment)
-- ARGV     now_ms, channel, decision_id, keep_ms (longest window), outbound ("email,sms,..."),
--          n_channel_caps, n_all_caps, then (limit, window_ms) pairs (channel caps first),
--          then (message_id, cooldown_ms) pairs: the candidates, best first
-- returns  {"ok", message_id} | {"cap", "<scope>:<limit>:<window_ms>"} | {"cooldown", ""}
--          | {"busy", ""}
local key = KEYS[1]
if KEYS[2] and redis.call("EXISTS", KEYS[2]) == 1 then return {"busy", ""} end
local now = tonumber(ARGV[1])
local channel = ARGV[2]
local decision = ARGV[3]
local keep = tonumber(ARGV[4])
local outbound = {}
for ch in string.gmatch(ARGV[5], "[^,]+") do outbound[ch] = true end
local n_ch, n_all = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. (now - keep))
local recent = redis.call("ZRANGEBYSCORE", key, now - keep, "+inf", "WITHSCORES")
local function count(window, scope_all)
  local n = 0
  for i = 1, #recent, 2 do
    local at = tonumber(recent[i + 1])
    if at > now - window then
      local ch = string.match(recent[i], "^([^|]*)|")
      if (scope_all and outbound[ch]) or ((not scope_all) and ch == channel) then n = n + 1 end
    end
  end
  return n
end
local arg = 8
for i = 1, n_ch + n_all do
  local limit, window = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 2
  local scope_all = i > n_ch
  if not (scope_all and not outbound[channel]) then
    if count(window, scope_all) >= limit then
      return {"cap", (scope_all and "*" or channel) .. ":" .. limit .. ":" .. window}
    end
  end
end
while arg <= #ARGV do
  local message, cooldown = ARGV[arg], tonumber(ARGV[arg + 1])
  arg = arg + 2
  local cooling = false
  for i = 1, #recent, 2 do
    local at = tonumber(recent[i + 1])
    local _, msg = string.match(recent[i], "^([^|]*)|([^|]*)|")
    if msg == message and at > now - cooldown then cooling = true break end
  end
  if not cooling then
    redis.call("ZADD", key, now, channel .. "|" .. message .. "|" .. decision)
    redis.call("PEXPIRE", key, keep)
    return {"ok", message}
  end
end
return {"cooldown", ""}
