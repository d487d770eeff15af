-- Clears an agent's user_axs entry when it is the given XB binding's X
-- number (bindType 1). Single key, so it also runs on a Redis Cluster.
-- KEYS: 1 user_axs hash; ARGV: 1 userid, 2 telX (normalized)
local axs = redis.call('HGET', KEYS[1], ARGV[1])
if axs then
  local ok, a = pcall(cjson.decode, axs)
  if ok and type(a) == 'table' and tonumber(a['bindType']) == 1 and tostring(a['xNumber']) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
return 0
