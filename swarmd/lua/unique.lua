-- Push unique jobs: take each job's lock and push it only if the lock was free, in one atomic step.
-- KEYS[1] `queues`
-- KEYS[2i] job i's lock (swarmd:unique:<digest>)   KEYS[2i+1] its queue key, or `schedule`
-- ARGV[5i-4] jid   ARGV[5i-3] lock TTL (seconds)   ARGV[5i-2] the job as it goes to Redis
-- ARGV[5i-1] queue name   ARGV[5i] "" to push it now (LPUSH), else its score in `schedule` (ZADD)
-- Returns, per job: 1 pushed (the lock now holds its jid), 0 not pushed (an identical job holds it).
--
-- SET NX and the push are one script: no check-then-push race, and never a lock without its job (a
-- lock taken by a push that then failed would refuse identical jobs until it expired).
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local base = 5 * i
  if redis.call('SET', KEYS[2 * i], ARGV[base - 4], 'NX', 'EX', ARGV[base - 3]) then
    if ARGV[base] == '' then
      redis.call('LPUSH', KEYS[2 * i + 1], ARGV[base - 2])
      redis.call('SADD', KEYS[1], ARGV[base - 1])
    else
      redis.call('ZADD', KEYS[2 * i + 1], ARGV[base], ARGV[base - 2])
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
