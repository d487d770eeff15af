-- Moves an XB binding to the unbound hash; clears the agent's user_axs field
-- when it is this XB binding. Idempotent: a second run finds it unbound.
-- KEYS: 1 xb hash, 2 xb_unbound hash, 3 xb_unbound index zset, 4 user_axs hash
-- ARGV: 1 subId, 2 telX (normalized), 3 now (epoch s), 4 retention (s),
--       5 '1' to prune this time (the caller prunes every few calls)
local now = tonumber(ARGV[3])

-- Prune unbound bindings past the retention, a bounded number per call.
if ARGV[5] == '1' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('HDEL', KEYS[2], unpack(old))
    redis.call('ZREM', KEYS[3], unpack(old))
  end
end

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
    return 'already_unbound'
  end
  return 'unknown'
end
local ok, b = pcall(cjson.decode, raw)
if not ok or type(b) ~= 'table' or string.sub(raw, 1, 1) ~= '{' then
  return 'invalid'
end

-- Keep the binding service's JSON text as it is; append unboundAt.
local stamped
if next(b) == nil then
  stamped = '{"unboundAt":' .. ARGV[3] .. '}'
else
  stamped = string.gsub(raw, '}%s*$', ',"unboundAt":' .. ARGV[3] .. '}', 1)
end
redis.call('HSET', KEYS[2], ARGV[1], stamped)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])

local name = 'userId'
if b[name] == nil then name = 'userid' end
local uid = b[name]
if type(uid) == 'number' then
  -- cjson made it a double (ids above 2^53 rounded): take its digits from
  -- the text as written.
  uid = string.match(raw, '"' .. name .. '"%s*:%s*(%d+)%s*[,}]')
end
if type(uid) == 'string' then
  local axs = redis.call('HGET', KEYS[4], tostring(uid))
  if axs then
    local ok2, a = pcall(cjson.decode, axs)
    if ok2 and type(a) == 'table' and tonumber(a['bindType']) == 1 and tostring(a['xNumber']) == ARGV[2] then
      redis.call('HDEL', KEYS[4], tostring(uid))
    end
  end
end
return 'unbound'
