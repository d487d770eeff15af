-- A request of the binding API, claimed before its work (docs/platform-api.md,
-- "Repeated requests"): the first of identical requests claims it; the others
-- wait for its answer. An ended request's record {"t": its claim token, "ok",
-- "m", "b", "holds", "until"} is given
-- - to a request that waited on that claim (ARGV[5] = the token it saw), and
-- - to any later request only while every state it describes still holds
--   ("holds": [key, field ('' = a string key), value]..., all equal now) and
--   its "until" (epoch s, 0 = none) has not passed;
-- otherwise the request is claimed afresh.
-- ARGV: 1 the key names (unused), 2 the request's key, 3 claim token, 4 lease (ms),
--       5 the claim token this caller waited on ('' = none)
-- Returns {'claimed'} | {'wait', token} | {'answer', record JSON}
local _, key, token, lease, waited = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local v = redis.call('GET', key)
if v then
  if string.sub(v, 1, 8) == 'pending:' then return {'wait', string.sub(v, 9)} end
  local ok, a = pcall(cjson.decode, v)
  if ok and type(a) == 'table' then
    if waited ~= '' and a.t == waited then return {'answer', v} end
    local holds = type(a.holds) == 'table' and #a.holds > 0
    if holds and tonumber(a['until']) and tonumber(a['until']) > 0 then
      holds = tonumber(redis.call('TIME')[1]) < tonumber(a['until'])
    end
    if holds then
      for _, h in ipairs(a.holds) do
        if type(h) ~= 'table' or type(h[1]) ~= 'string' or type(h[2]) ~= 'string' then
          holds = false
          break
        end
        local current
        if h[2] == '' then
          current = redis.call('GET', h[1])
        else
          current = redis.call('HGET', h[1], h[2])
        end
        if current ~= h[3] then holds = false break end
      end
    end
    if holds then return {'answer', v} end
  end
end
redis.call('SET', key, 'pending:' .. token, 'PX', lease)
return {'claimed'}
