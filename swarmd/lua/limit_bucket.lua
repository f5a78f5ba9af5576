-- A token bucket's acquire: the bucket holds up to ARGV[1] tokens and gains ARGV[1] every ARGV[2]
-- milliseconds (continuously); a grant takes one. Over any span of T ms at most
-- limit + T * limit / per grants happen, across every swarm.
-- KEYS[1] the limiter's hash: `tokens` (left at `at`, fractional) and `at` (Redis time, ms)
-- ARGV[1] limit (the bucket's size)   ARGV[2] per (ms)
-- Returns {1, now} granted, or {0, now, ms until one token is there}. `now` is Redis's clock (TIME),
-- never a client's; if it goes back (a failover to a server whose clock is behind), no token is added
-- until it passes `at` again. A full bucket is the same as no key: the hash expires once it would be
-- full again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, limit, per = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local rate = limit / per
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = limit, now
end
if now > at then
  tokens = math.min(limit, tokens + (now - at) * rate)
  at = now
end
if tokens < 1 then
  return {0, now, math.max(1, math.ceil((1 - tokens) / rate))}
end
tokens = tokens - 1
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', key, math.ceil((limit - tokens) / rate) + 1000)
return {1, now}
