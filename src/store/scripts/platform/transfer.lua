-- Moves a user's numbers to another account (the seed's 转移绑定账号). A
-- platform on which the target already holds a number is left as it is.
-- ARGV: 1 the key names (see store::platform), 2 from userId, 3 to userId
-- Returns the numbers moved.
local _, from, to = ARGV[1], ARGV[2], ARGV[3]
local fromKey, toKey = K.user_ax .. from, K.user_ax .. to
local moved = {}
local entries = redis.call('HGETALL', fromKey)
for i = 1, #entries, 2 do
  local pid, x = entries[i], entries[i + 1]
  if redis.call('HEXISTS', toKey, pid) == 0 then
    redis.call('HSET', toKey, pid, x)
    redis.call('HDEL', fromKey, pid)
    redis.call('HSET', K.number .. x, 'userId', to)
    table.insert(moved, x)
  end
end
local fault = redis.call('GET', K.user_fault .. from)
if fault and redis.call('EXISTS', K.user_fault .. to) == 0 then
  redis.call('SET', K.user_fault .. to, fault)
  redis.call('DEL', K.user_fault .. from)
  redis.call('HSET', K.number .. fault, 'userId', to)
  table.insert(moved, fault)
end
local axs = K.user_axs
local current = redis.call('HGET', axs, from)
if current and #moved > 0 and redis.call('HEXISTS', axs, to) == 0 then
  redis.call('HSET', axs, to, current)
  redis.call('HDEL', axs, from)
end
return moved
