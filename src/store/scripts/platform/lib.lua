-- Shared by every platform script (after the key names K).

-- True when a is a smaller decimal id than b (ids compared as text: Lua
-- numbers are doubles).
local function id_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- PrivateNumber_user_axs[uid] made true again after uid's numbers changed
-- (docs/platform-api.md, "Invariants"): {X, 0} for the user's bound AX
-- number (bind state 1 or 5) bound last (boundAt; a tie goes to the lower
-- platform id); else {T, 0} for the user's bound temporary number; else an
-- XB entry {X, 1} that GetCallNumber wrote, while X is still the user's;
-- else no entry.
local function axs_recompute(uid)
  local best, best_at, best_pid = nil, -1, nil
  local function bound(x)
    local n = K.number .. x
    local bs = redis.call('HGET', n, 'bindState')
    return (bs == '1' or bs == '5') and redis.call('HGET', n, 'userId') == uid
  end
  local ax = redis.call('HGETALL', K.user_ax .. uid)
  for i = 1, #ax, 2 do
    local pid, x = ax[i], ax[i + 1]
    if bound(x) then
      local at = tonumber(redis.call('HGET', K.number .. x, 'boundAt') or '0') or 0
      if best == nil or at > best_at or (at == best_at and id_less(pid, best_pid)) then
        best, best_at, best_pid = x, at, pid
      end
    end
  end
  if best == nil then
    local t = redis.call('GET', K.user_fault .. uid)
    if t and bound(t) then best = t end
  end
  if best ~= nil then
    redis.call('HSET', K.user_axs, uid, cjson.encode({xNumber = best, bindType = 0}))
    return
  end
  local current = redis.call('HGET', K.user_axs, uid)
  if current then
    local ok, v = pcall(cjson.decode, current)
    local keep = ok and type(v) == 'table' and tonumber(v.bindType) == 1
      and type(v.xNumber) == 'string'
      and redis.call('HGET', K.number .. v.xNumber, 'userId') == uid
    if not keep then redis.call('HDEL', K.user_axs, uid) end
  end
end
