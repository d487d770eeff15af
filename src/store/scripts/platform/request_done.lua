-- Ends a claimed request: its record (see request_claim.lua) kept for `ttl`
-- milliseconds, for the requests that waited on it and, while its holds
-- hold, for later repeats. Nothing happens when the claim is no longer this
-- one (its lease passed and another request claimed it).
-- ARGV: 1 the key names (unused), 2 the request's key, 3 claim token, 4 record JSON, 5 ttl (ms)
local _, key, token, record, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('GET', key) ~= 'pending:' .. token then return 0 end
redis.call('SET', key, record, 'PX', ttl)
return 1
