-- A stream's last id, entries ever added and length (XINFO STREAM without the first and last
-- entries it also returns: an entry may weigh 40 KB), and, when the last entry is the
-- dataflow's own freshness probe (its field: ARGV[1], `models.progress.PROBE_FIELD`), the
-- id of the entry before it ("0-0": none), so that a reader at that entry counts as caught up: the probe is
-- appended before it can be read, and its reader reports where it is only every 0.2 s.
-- A missing stream: "0-0", 0, 0, false.
-- KEYS   the stream
-- ARGV   the field of a freshness probe's entry
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
if not ok then return {'0-0', 0, 0, false} end
local out = {'0-0', 0, 0, false}
local last
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'last-generated-id' then out[1] = info[i + 1]
  elseif k == 'entries-added' then out[2] = info[i + 1]
  elseif k == 'length' then out[3] = info[i + 1]
  elseif k == 'last-entry' then last = info[i + 1] end
end
if last and last[1] == out[1] and last[2][1] == ARGV[1] then
  local before = redis.call('XREVRANGE', KEYS[1], '(' .. last[1], '-', 'COUNT', 1)
  out[4] = before[1] and before[1][1] or '0-0'
end
return out
