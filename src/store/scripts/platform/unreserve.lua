-- Undoes a reservation whose carrier call failed: no half-made binding.
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 number, 4 kind ('ax' | 'fault'), 5 reservation token
local _, uid, x, kind, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = K.number .. x
if redis.call('HGET', n, 'userId') ~= uid or redis.call('HGET', n, 'bindState') ~= '2'
  or redis.call('HGET', n, 'reservation') ~= token then
  return 0
end
local pid = redis.call('HGET', n, 'platformId')
if redis.call('HGET', n, 'ownedBefore') == '1' then
  redis.call('HSET', n, 'bindState', '0')
else
  redis.call('HSET', n, 'bindState', '0', 'userId', '')
  if kind == 'fault' then
    redis.call('DEL', K.user_fault .. uid)
  else
    redis.call('HDEL', K.user_ax .. uid, pid)
  end
  if redis.call('HGET', n, 'numberState') == '0' then
    redis.call('SADD', K.pool_free .. pid, x)
  end
end
redis.call('HDEL', n, 'reservedAt', 'ownedBefore', 'reservation')
return 1
