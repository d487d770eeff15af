-- Releases a publish lease, only if it is still the caller's.
-- KEYS: 1 calllog:<callId>; ARGV: 1 lease token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
