-- What a decision reads, in one command: the profile, else the link to the canonical id, and
-- the contact history since ARGV[1] (ms). All three keys carry the same {id} hash tag.
-- KEYS  profile, link, contacts      returns {profile or false, link or false, {member, score, ...}}
local blob = redis.call("GET", KEYS[1])
local link = false
if not blob then link = redis.call("GET", KEYS[2]) end
return {blob, link, redis.call("ZRANGEBYSCORE", KEYS[3], ARGV[1], "+inf", "WITHSCORES")}
