-- What a decision reads, in one command: the profile, else the link to the canonical id, and
-- the contact history since ARGV[1] (ms). All the keys carry the same {id} hash tag.
-- With KEYS[4] (the customer's hold key) and ARGV[2] (a token), the same command also takes
-- the customer's decision hold for ARGV[3] ms when the id is canonical (a profile, or no
-- link) and no other decision holds it: the history it returns then stays exact until the
-- hold is released (`decision_done.lua`), since contacts are only recorded under a hold
-- (`contacts.lua` answers "busy" while another holds it).
-- KEYS  profile, link, contacts[, hold]
-- returns {profile or false, link or false, {member, score, ...}, held (1, 0; 0 without hold)}
local blob = redis.call("GET", KEYS[1])
local link = false
if not blob then link = redis.call("GET", KEYS[2]) end
local contacts = redis.call("ZRANGEBYSCORE", KEYS[3], ARGV[1], "+inf", "WITHSCORES")
local held = 0
if KEYS[4] and ARGV[2] and ARGV[2] ~= "" and (blob or not link) then
  if redis.call("SET", KEYS[4], ARGV[2], "NX", "PX", ARGV[3]) then held = 1 end
end
return {blob, link, contacts, held}
