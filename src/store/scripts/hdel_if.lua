-- Deletes a hash field only if it still holds the given value.
-- KEYS: 1 hash; ARGV: 1 field, 2 value
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
