-- Completes a reserved binding after the carrier bound it.
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 number, 4 subId, 5 telA, 6 now,
--       7 kind ('ax' | 'fault'), 8 reservation token
-- Returns 'ok' | 'lost' (the reservation is not this one any more: released,
-- taken over after its lease, or the number given away)
local _, uid, x, sub, a, now, kind, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local n = K.number .. x
if redis.call('HGET', n, 'userId') ~= uid or redis.call('HGET', n, 'bindState') ~= '2'
  or redis.call('HGET', n, 'reservation') ~= token then
  return 'lost'
end
local state = '1'
if kind == 'fault' then state = '5' end
redis.call('HSET', n, 'bindState', state, 'subId', sub, 'telA', a, 'boundAt', now)
redis.call('HDEL', n, 'reservedAt', 'ownedBefore', 'reservation')
axs_recompute(uid)
return 'ok'
