-- Claim ticks of periodic jobs and push each claimed tick's job, exactly once across every swarm.
-- KEYS[1] swarmd:periodic (entry id -> the last tick claimed)   KEYS[2] `queues`
-- KEYS[2+i] for entry i: its queue key
-- for entry i: ARGV[5i-4] entry id   ARGV[5i-3] tick (epoch seconds)   ARGV[5i-2] the job as it goes
--              into its queue   ARGV[5i-1] queue name   ARGV[5i] "1" to push it, "0" to only record
--              the tick (a missed tick older than catch_up)
-- Returns, per entry: 1 pushed, 0 already claimed (by this or another swarm: nothing done), -1 the
-- tick was recorded without a push (an entry seen for the first time, or "0" above).
--
-- The last tick only moves forward, and the check, the move and the push are one atomic step: however
-- many workers of however many swarms claim the same tick, exactly one of them pushes its job. An
-- entry seen for the first time (or whose record is not a number) starts at this tick without running
-- it, so a new entry, or a fresh Redis, never runs a tick from before it existed.
local out = {}
for i = 1, #KEYS - 2 do
  local id, tick = ARGV[5 * i - 4], tonumber(ARGV[5 * i - 3])
  local last = tonumber(redis.call('HGET', KEYS[1], id) or '')
  if last and last >= tick then
    out[i] = 0
  else
    redis.call('HSET', KEYS[1], id, ARGV[5 * i - 3])
    if last and ARGV[5 * i] == '1' then
      redis.call('LPUSH', KEYS[2 + i], ARGV[5 * i - 2])
      redis.call('SADD', KEYS[2], ARGV[5 * i - 1])
      out[i] = 1
    else
      out[i] = -1
    end
  end
end
return out
