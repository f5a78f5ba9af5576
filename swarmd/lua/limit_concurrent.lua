-- A concurrency limiter's acquire (or renew): at most ARGV[2] holders at once, across every swarm.
-- KEYS[1] the limiter's sorted set: member = a holder's token, score = when its lease ends (Redis
--         time, milliseconds)
-- ARGV[1] the holder's token (random, one per `with limiter:`)   ARGV[2] limit   ARGV[3] lease (ms)
-- ARGV[4] "acquire" or "renew"
-- Returns {1, now} when held (acquired, or renewed), {0, now, ms until the first lease ends} when the
-- limit is reached (acquire) or the lease was lost (renew). `now` is Redis's clock (TIME), never a
-- client's, so holders on hosts with skewed clocks agree on when a lease ends.
--
-- A holder that dies without releasing (SIGKILL) is dropped here once its lease has ended: the next
-- acquire after that takes its place. An acquire sent again after a lost reply finds its own token and
-- renews it rather than taking a second place.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, token, limit, lease = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZSCORE', key, token)
if ARGV[4] == 'renew' then
  if not held then
    return {0, now, 0}
  end
elseif not held and redis.call('ZCARD', key) >= limit then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, now, tonumber(first[2]) - now}
end
redis.call('ZADD', key, now + lease, token)
if redis.call('PTTL', key) < lease then
  redis.call('PEXPIRE', key, lease)
end
return {1, now}
