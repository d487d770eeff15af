-- Looks up a call record's binding and claims its callId for publishing.
-- KEYS: 1 calllog:<callId>, 2 xb hash, 3 xb_unbound hash
-- ARGV: 1 subId, 2 lease token, 3 lease (ms)
-- Returns {'duplicate'} | {'busy'} | {'unattributed'} | {'claimed', binding}
local mark = redis.call('GET', KEYS[1])
if mark then
  if mark == '1' then return {'duplicate'} end
  return {'busy'}
end
local b = redis.call('HGET', KEYS[2], ARGV[1])
if not b then b = redis.call('HGET', KEYS[3], ARGV[1]) end
if not b then return {'unattributed'} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {'claimed', b}
