-- After the carrier ended an AX binding: the number stays the user's number
-- of record (release = 1: it goes back to its platform's free pool instead).
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 number, 4 release ('0' | '1'),
--       5 the subId the caller read and ended at the carrier ('' = none)
-- Returns 1, 0 when the number is not this user's, 2 when its binding is no
-- longer the one read (unbound and bound again meanwhile: nothing changes).
local _, uid, x, release, sub = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = K.number .. x
if redis.call('HGET', n, 'userId') ~= uid then return 0 end
if (redis.call('HGET', n, 'subId') or '') ~= sub then return 2 end
local pid = redis.call('HGET', n, 'platformId')
redis.call('HSET', n, 'bindState', '0')
redis.call('HDEL', n, 'subId', 'telA', 'boundAt', 'reservedAt', 'ownedBefore', 'reservation')
if release == '1' then
  redis.call('HSET', n, 'userId', '')
  if redis.call('HGET', K.user_ax .. uid, pid) == x then
    redis.call('HDEL', K.user_ax .. uid, pid)
  end
  if redis.call('GET', K.user_fault .. uid) == x then
    redis.call('DEL', K.user_fault .. uid)
  end
  if redis.call('HGET', n, 'numberState') == '0' then
    redis.call('SADD', K.pool_free .. pid, x)
  end
end
axs_recompute(uid)
return 1
