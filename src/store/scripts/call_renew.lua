-- Extends a publish lease, only if it is still the caller's.
-- KEYS: 1 calllog:<callId>; ARGV: 1 lease token, 2 lease (ms)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
