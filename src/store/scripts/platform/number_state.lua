-- Sets a number's number state (dictionary 1527); only a number in state 0
-- with no user is in its platform's free pool.
-- ARGV: 1 the key names (see store::platform), 2 number, 3 state. Returns 1, or 0 for an unknown number.
local _, x, st = ARGV[1], ARGV[2], ARGV[3]
local n = K.number .. x
if redis.call('EXISTS', n) == 0 then return 0 end
local pid = redis.call('HGET', n, 'platformId')
redis.call('HSET', n, 'numberState', st)
local free = K.pool_free .. pid
if st == '0' and redis.call('HGET', n, 'bindState') == '0' and (redis.call('HGET', n, 'userId') or '') == '' then
  redis.call('SADD', free, x)
else
  redis.call('SREM', free, x)
end
return 1
