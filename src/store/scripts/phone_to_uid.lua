-- PhoneToUID for a batch, atomically: each number gets its existing id, or
-- the first of its candidate ids that no other number holds.
-- KEYS: 1 uid_by_phone hash, 2 phone_by_uid hash
-- ARGV: k (candidates per number), then per number: phone, k candidates
-- Returns the ids in order; an empty string where every candidate was taken.
local k = tonumber(ARGV[1])
local out = {}
local i = 2
while i <= #ARGV do
  local phone = ARGV[i]
  local uid = redis.call('HGET', KEYS[1], phone)
  if not uid then
    uid = ''
    for j = 1, k do
      local cand = ARGV[i + j]
      if redis.call('HSETNX', KEYS[2], cand, phone) == 1 then
        redis.call('HSET', KEYS[1], phone, cand)
        uid = cand
        break
      end
    end
  end
  out[#out + 1] = uid
  i = i + 1 + k
end
return out
