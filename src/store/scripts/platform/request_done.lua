-- Ends a claimed request: its answer stored for `ttl` seconds (a repeated
-- request gets it while its holds hold), or the claim dropped (answer '').
-- Nothing happens when the claim is no longer this one (its lease passed).
-- ARGV: 1 the key names (unused), 2 the request's key, 3 claim token, 4 answer JSON or '', 5 ttl (s)
local _, key, token, answer, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('GET', key) ~= 'pending:' .. token then return 0 end
if answer == '' then
  redis.call('DEL', key)
else
  redis.call('SET', key, answer, 'EX', ttl)
end
return 1
