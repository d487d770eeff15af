-- Claims XB bindings whose expiry has passed, for one replica to publish
-- their unbind: each claimed one is pushed `lease` seconds into the future,
-- so no other replica sees it due meanwhile; the claimant removes it once its
-- unbind is confirmed (a claimant that dies leaves it to be claimed again).
-- ARGV: 1 the key names (see store::platform), 2 now, 3 lease, 4 max. Returns {subId, binding JSON or ''}...
local _, now, lease, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local z = K.xb_expiry
local due = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, max)
local out = {}
for _, sub in ipairs(due) do
  redis.call('ZADD', z, now + lease, sub)
  table.insert(out, sub)
  table.insert(out, redis.call('HGET', K.xb, sub) or '')
end
return out
