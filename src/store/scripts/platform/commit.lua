-- Completes a reserved binding after the carrier bound it.
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 number, 4 subId, 5 telA, 6 now, 7 kind ('ax' | 'fault')
-- Returns 'ok' | 'lost' (the reservation is not this user's any more)
local _, uid, x, sub, a, now, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local n = K.number .. x
if redis.call('HGET', n, 'userId') ~= uid then return 'lost' end
local state = '1'
if kind == 'fault' then state = '5' end
redis.call('HSET', n, 'bindState', state, 'subId', sub, 'telA', a, 'boundAt', now)
redis.call('HDEL', n, 'reservedAt', 'ownedBefore')
local axs = K.user_axs
local current = redis.call('HGET', axs, uid)
local keep = false
if kind == 'fault' and current then
  local ok, v = pcall(cjson.decode, current)
  keep = ok and type(v) == 'table' and v.bindType == 0
end
if not keep then
  redis.call('HSET', axs, uid, cjson.encode({xNumber = x, bindType = 0}))
end
return 'ok'
