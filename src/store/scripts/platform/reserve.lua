-- The bind lock (seed, 2020-04-26): reserves a number for a user in one
-- atomic step, so that no number is ever held by two users and no user holds
-- two AX numbers of one platform (or two temporary numbers), across replicas.
-- ARGV: 1 the key names (see store::platform), 2 userId, 3 platformId ('' when the number is given),
--       4 number ('' = take a free one of the platform), 5 now, 6 kind ('ax' | 'fault'),
--       7 reservation token, 8 lease (s): a reservation younger than this is in progress
-- Returns {'reserved', X, platformId} | {'resume', X, platformId} (a half-made
-- binding of this user, older than the lease: complete it) | {'busy', X} (a
-- bind of it is in progress) | {'has', X} | {'none'} | {'unknown'}
-- | {'state', n} (the number cannot be bound: its number state, or bind state)
-- | {'temporary', X} (an AX bind of the user's own temporary number)
local _, uid, pid, x, now, kind, token, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local function num(n) return K.number .. n end
if x ~= '' then
  if redis.call('EXISTS', num(x)) == 0 then return {'unknown'} end
  pid = redis.call('HGET', num(x), 'platformId')
  -- The user's temporary number stays temporary: as an AX number too it
  -- would be in both records, and an undo would free it under user_fault.
  if kind ~= 'fault' and redis.call('GET', K.user_fault .. uid) == x then
    return {'temporary', x}
  end
end
local userKey, held
if kind == 'fault' then
  userKey = K.user_fault .. uid
  held = redis.call('GET', userKey)
  -- A user in fault mode (an AX binding in bind state 5, from
  -- TemporaryBindNumber) has a fault binding too: checked before the pool.
  if not held then
    local ax = redis.call('HVALS', K.user_ax .. uid)
    for _, a in ipairs(ax) do
      if redis.call('HGET', num(a), 'bindState') == '5' and redis.call('HGET', num(a), 'userId') == uid then
        return {'has', a}
      end
    end
  end
else
  userKey = K.user_ax .. uid
  held = redis.call('HGET', userKey, pid)
end
-- A temporary number may be of any platform: its own is the one to use.
if held then pid = redis.call('HGET', num(held), 'platformId') or pid end
local own = '0'
if held then
  local bs = redis.call('HGET', num(held), 'bindState')
  if x ~= '' and x ~= held then return {'has', held} end
  if bs == '2' then
    local at = tonumber(redis.call('HGET', num(held), 'reservedAt') or '0') or 0
    if tonumber(now) - at < tonumber(lease) then return {'busy', held} end
    redis.call('HSET', num(held), 'reservedAt', now, 'reservation', token)
    return {'resume', held, pid}
  end
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
redis.call('HSET', n, 'bindState', '2', 'userId', uid, 'reservedAt', now, 'ownedBefore', own, 'reservation', token)
if kind == 'fault' then redis.call('SET', userKey, x) else redis.call('HSET', userKey, pid, x) end
return {'reserved', x, pid}
