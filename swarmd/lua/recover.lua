-- Recover the private in-flight list of a worker that died (crash, SIGKILL, vanished host).
-- KEYS[1] the dead worker's in-flight list   KEYS[2] its liveness key   KEYS[3] `dead`
-- KEYS[4] swarmd:workers
-- then, for each job i: KEYS[4+2i-1] its queue (or `dead` for an undecodable job),
--                       KEYS[4+2i]   its crash counter swarmd:crashes:<jid>
-- and last, KEYS[#KEYS] swarmd:recovery (the counts behind swarmd_jobs_recovered/poisoned_total)
-- ARGV[1] identity   ARGV[2] "1" to recover even if the liveness key exists (the supervisor saw
-- the process die)   ARGV[3] crash counter TTL   ARGV[4] crashes before a job is poison   ARGV[5] now
-- then, for each job i: ARGV[5+2i-1] the raw job, ARGV[5+2i] the job as it goes to `dead` if poison
-- Returns {requeued, poisoned} or -1 when the worker is alive after all.
--
-- Each job is removed with LREM before it is pushed anywhere: if two recoverers race, only the one
-- whose LREM removed the entry pushes it, so no job is recovered twice.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local requeued, poisoned = 0, 0
local n = (#KEYS - 5) / 2
for i = 1, n do
  local target, counter = KEYS[4 + 2 * i - 1], KEYS[4 + 2 * i]
  local raw, poison = ARGV[5 + 2 * i - 1], ARGV[5 + 2 * i]
  if redis.call('LREM', KEYS[1], -1, raw) > 0 then
    if target == KEYS[3] then
      redis.call('ZADD', KEYS[3], ARGV[5], raw)
      poisoned = poisoned + 1
    else
      local crashes = redis.call('INCR', counter)
      redis.call('EXPIRE', counter, ARGV[3])
      if crashes >= tonumber(ARGV[4]) then
        redis.call('ZADD', KEYS[3], ARGV[5], poison)
        redis.call('DEL', counter)
        poisoned = poisoned + 1
      else
        redis.call('RPUSH', target, raw)
        requeued = requeued + 1
      end
    end
  end
end
if requeued > 0 then
  redis.call('HINCRBY', KEYS[#KEYS], 'recovered', requeued)
end
if poisoned > 0 then
  redis.call('HINCRBY', KEYS[#KEYS], 'poison', poisoned)
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[1])
end
return {requeued, poisoned}
