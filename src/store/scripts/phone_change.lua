-- Records an employee's phone change. Idempotent: HSET of the same values,
-- ZADD NX keeps the first-seen time.
-- KEYS: 1 user_phone hash, 2 user_phones:<uid> zset, 3 phone_user hash
-- ARGV: 1 userid, 2 newPhone, 3 oldPhone ('' when none), 4 now (epoch s)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
if ARGV[3] == '' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[2])
else
  -- Both phones in one call (NX applies to each member; every Lua call
  -- costs Redis 1-2 us, docs/performance.md).
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[2], ARGV[4], ARGV[3])
  -- The old phone keeps resolving to this employee unless it already
  -- belongs to someone (it may have been given to another employee since).
  redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[1])
end
return 1
