-- Moves a user's numbers to another account (the seed's 转移绑定账号). A
-- platform on which the target already holds a number is left as it is, and
-- so is a number whose bind is in progress (bind state 2).
-- ARGV: 1 the key names (see store::platform), 2 from userId, 3 to userId
-- Returns the numbers moved.
local _, from, to = ARGV[1], ARGV[2], ARGV[3]
local fromKey, toKey = K.user_ax .. from, K.user_ax .. to
local moved = {}
local function movable(x)
  return redis.call('HGET', K.number .. x, 'bindState') ~= '2'
end
local entries = redis.call('HGETALL', fromKey)
for i = 1, #entries, 2 do
  local pid, x = entries[i], entries[i + 1]
  if redis.call('HEXISTS', toKey, pid) == 0 and movable(x) then
    redis.call('HSET', toKey, pid, x)
    redis.call('HDEL', fromKey, pid)
    redis.call('HSET', K.number .. x, 'userId', to)
    table.insert(moved, x)
  end
end
local fault = redis.call('GET', K.user_fault .. from)
if fault and redis.call('EXISTS', K.user_fault .. to) == 0 and movable(fault) then
  redis.call('SET', K.user_fault .. to, fault)
  redis.call('DEL', K.user_fault .. from)
  redis.call('HSET', K.number .. fault, 'userId', to)
  table.insert(moved, fault)
end
if #moved > 0 then
  axs_recompute(from)
  axs_recompute(to)
end
return moved
