-- Fault mode on one number in one atomic step: bind state `from` -> `to`
-- only while the number is still `uid`'s and in `from` (a release that came
-- between the caller's read and this write wins: nothing changes).
-- ARGV: 1 the key names (see store::platform), 2 number, 3 userId (not empty), 4 from, 5 to
-- Returns 1 (changed) or 0.
local _, x, uid, from, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = K.number .. x
if uid == '' or redis.call('HGET', n, 'userId') ~= uid or redis.call('HGET', n, 'bindState') ~= from then
  return 0
end
redis.call('HSET', n, 'bindState', to)
return 1
