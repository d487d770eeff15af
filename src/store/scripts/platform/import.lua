-- Adds a number to its platform's pool (free, number state 0). A number
-- already known is left as it is.
-- ARGV: 1 the key names (see store::platform), 2 number, 3 platformId, 4 poolId, 5 regionId, 6 now
-- Returns 1 (added) or 0 (known already).
local _, x, pid, pool, region, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n = K.number .. x
if redis.call('EXISTS', n) == 1 then return 0 end
redis.call('HSET', n, 'platformId', pid, 'poolId', pool, 'regionId', region,
  'numberState', '0', 'bindState', '0', 'userId', '', 'addedAt', now)
redis.call('SADD', K.pool .. pid, x)
redis.call('SADD', K.pool_free .. pid, x)
redis.call('SADD', K.platforms, pid)
return 1
