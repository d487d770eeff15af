-- Records an XB binding the carrier made: the binding, its expiry, and the
-- user's current number ({X, 1}) when the user has no AX binding shown.
-- ARGV: 1 the key names (see store::platform), 2 subId, 3 binding JSON, 4 expiresAt, 5 userId, 6 X
local _, sub, json, exp, uid, x = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
redis.call('HSET', K.xb, sub, json)
redis.call('ZADD', K.xb_expiry, exp, sub)
local axs = K.user_axs
local current = redis.call('HGET', axs, uid)
local ax = false
if current then
  local ok, v = pcall(cjson.decode, current)
  ax = ok and type(v) == 'table' and v.bindType == 0
end
-- Only while X is still the user's (a release may have come during the
-- carrier call): user_axs never names a number its user does not hold.
if not ax and redis.call('HGET', K.number .. x, 'userId') == uid then
  redis.call('HSET', axs, uid, cjson.encode({xNumber = x, bindType = 1}))
end
return 1
