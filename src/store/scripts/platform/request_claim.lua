-- A request of the binding API, claimed before its work (docs/platform-api.md,
-- "Repeated requests"): the first of identical requests claims it; the others
-- wait for its answer. A stored answer is given only while every state it
-- describes still holds ("holds": [key, field ('' = a string key), value]...);
-- otherwise it is dropped and the request is claimed afresh.
-- ARGV: 1 the key names (unused), 2 the request's key, 3 claim token, 4 lease (ms)
-- Returns {'claimed'} | {'wait'} | {'answer', stored JSON}
local _, key, token, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local v = redis.call('GET', key)
if v then
  if string.sub(v, 1, 8) == 'pending:' then return {'wait'} end
  local ok, a = pcall(cjson.decode, v)
  if ok and type(a) == 'table' and type(a.holds) == 'table' and #a.holds > 0 then
    local holds = true
    for _, h in ipairs(a.holds) do
      local current
      if type(h) ~= 'table' or type(h[1]) ~= 'string' or type(h[2]) ~= 'string' then
        holds = false
      elseif h[2] == '' then
        current = redis.call('GET', h[1])
      else
        current = redis.call('HGET', h[1], h[2])
      end
      if not holds or current ~= h[3] then holds = false break end
    end
    if holds then return {'answer', v} end
  end
end
redis.call('SET', key, 'pending:' .. token, 'PX', lease)
return {'claimed'}
