-- A stream's last id, entries ever added and length (XINFO STREAM without the first and last
-- entries it also returns: an entry may weigh 40 KB). A missing stream: "0-0", 0, 0.
-- KEYS   the stream
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return {'0-0', 0, 0} end
local out = {'0-0', 0, 0}
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'last-generated-id' then out[1] = info[i + 1]
  elseif k == 'entries-added' then out[2] = info[i + 1]
  elseif k == 'length' then out[3] = info[i + 1] end
end
return out
