-- The bind lock (seed, 2020-04-26): reserves a number for a user in one
-- atomic step, so that no number is ever held by two users and no user holds
-- two AX numbers of one platform (or two temporary numbers), across replicas.
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 platformId ('' when the number is given),
--       4 number ('' = take a free one of the platform), 5 now, 6 kind ('ax' | 'fault')
-- Returns {'reserved', X, platformId} | {'resume', X, platformId} (a half-made
-- binding of this user: complete it) | {'has', X} | {'none'} | {'unknown'}
-- | {'state', n} (the number cannot be bound: its number state, or bind state)
local _, uid, pid, x, now, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local function num(n) return K.number .. n end
if x ~= '' then
  if redis.call('EXISTS', num(x)) == 0 then return {'unknown'} end
  pid = redis.call('HGET', num(x), 'platformId')
end
local userKey, held
if kind == 'fault' then
  userKey = K.user_fault .. uid
  held = redis.call('GET', userKey)
else
  userKey = K.user_ax .. uid
  held = redis.call('HGET', userKey, pid)
end
local own = '0'
if held then
  local bs = redis.call('HGET', num(held), 'bindState')
  if x ~= '' and x ~= held then return {'has', held} end
  if bs == '2' then return {'resume', held, pid} end
  if bs ~= '0' then return {'has', held} end
  x = held
  own = '1'
end
if x == '' then
  x = redis.call('SPOP', K.pool_free .. pid)
  if not x then return {'none'} end
end
local n = num(x)
local st = redis.call('HGET', n, 'numberState')
if st ~= '0' then
  redis.call('SREM', K.pool_free .. pid, x)
  return {'state', st}
end
local bs = redis.call('HGET', n, 'bindState')
local owner = redis.call('HGET', n, 'userId') or ''
if bs ~= '0' or (owner ~= '' and owner ~= uid) then
  if bs == '0' then bs = '1' end
  return {'state', bs}
end
redis.call('SREM', K.pool_free .. pid, x)
redis.call('HSET', n, 'bindState', '2', 'userId', uid, 'reservedAt', now, 'ownedBefore', own)
if kind == 'fault' then redis.call('SET', userKey, x) else redis.call('HSET', userKey, pid, x) end
return {'reserved', x, pid}
