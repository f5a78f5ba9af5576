-- A window limiter's acquire: at most ARGV[1] grants in any ARGV[2] milliseconds (a sliding window),
-- across every swarm.
-- KEYS[1] the limiter's sorted set of grants: member = the grant's token, score = its time (Redis
--         time, milliseconds)
-- ARGV[1] limit   ARGV[2] window (ms)   ARGV[3] the grant's token (random)
-- Returns {1, now} granted, or {0, now, ms until the oldest grant leaves the window}. `now` is Redis's
-- clock (TIME), never a client's. The set holds at most `limit` entries and expires one window after
-- the last grant. An acquire sent again after a lost reply finds its token and is granted again
-- without a second entry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, limit, per = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per)
if redis.call('ZSCORE', key, ARGV[3]) then
  return {1, now}
end
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, now, math.max(1, tonumber(oldest[2]) + per - now)}
end
redis.call('ZADD', key, now, ARGV[3])
redis.call('PEXPIRE', key, per)
return {1, now}
