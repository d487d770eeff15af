-- ChangeBindANumber's local step, after the carrier changed A: only while
-- the number is still this user's under the subscription the carrier changed.
-- ARGV: 1 the key names (see store::platform), 2 number, 3 userId, 4 subId, 5 telA
-- Returns 1, or 0 when the binding is no longer that one.
local _, x, uid, sub, a = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = K.number .. x
if redis.call('HGET', n, 'userId') ~= uid or (redis.call('HGET', n, 'subId') or '') ~= sub then
  return 0
end
redis.call('HSET', n, 'telA', a)
return 1
