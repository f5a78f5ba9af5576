-- Recover the private in-flight list of a worker that died (crash, SIGKILL, vanished host) or was
-- recycled (memory) with jobs still running.
-- KEYS[1] the worker's private list   KEYS[2] its liveness key   KEYS[3] `dead`   KEYS[4] swarmd:workers
-- KEYS[5] swarmd:quarantine   KEYS[6] `processes`   KEYS[7..9] its `<identity>`, `<identity>:work` and
--         `<identity>:workers` (Sidekiq's records of the process)
-- KEYS[10] swarmd:recovery (the counts behind swarmd_jobs_recovered_total / swarmd_jobs_poisoned_total)
-- then two keys per job i: KEYS[9+2i] its queue (read only for the fate "requeue"), KEYS[10+2i] its
--         counter: swarmd:crashes:<jid> for the fate "count", swarmd:vanished:<jid> for "requeue"
-- ARGV[1] identity   ARGV[2] "1" to recover even if the liveness key exists (the process is known to
--         be gone)   ARGV[3] counter TTL   ARGV[4] crashes that make a job poison   ARGV[5] now
-- ARGV[6] vanishings that make a job a suspect
-- then for each job i: ARGV[4+3i] the job as it is in the list, ARGV[5+3i] its fate, ARGV[6+3i] the job
--         as it goes to `dead` if this crash makes it poison ("" unless the fate is "count"). Fates:
--   "dead"        undecodable: to `dead` unchanged
--   "requeue"     its ordinary worker vanished without anyone seeing it die (its liveness key expired:
--                 a host lost, a whole swarm killed): back to the head of its queue; after ARGV[6]
--                 such vanishings (a job that takes its whole swarm down) it becomes a suspect
--   "quarantine"  a suspect (it ran beside others in an ordinary worker): to the quarantine list,
--                 where it runs alone; no crash is counted
--   "count"       it ran alone in a quarantine worker: one crash counted; at the limit it goes to
--                 `dead` (as poison), else back to the quarantine list
-- Returns {quarantined, poisoned, dead unchanged, requeued}, or -1 when the worker is alive after all.
--
-- Each job is removed with LREM before it is pushed anywhere: if two recoverers race, or one call is
-- sent again after its reply was lost, only the call whose LREM removed the entry moves it (and counts
-- its crash), so no job is recovered, or counted, twice.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local quarantined, poisoned, unchanged, requeued = 0, 0, 0, 0
local n = (#KEYS - 10) / 2
for i = 1, n do
  local raw, fate, poison = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  local target, counter = KEYS[9 + 2 * i], KEYS[10 + 2 * i]
  if redis.call('LREM', KEYS[1], -1, raw) > 0 then
    if fate == 'dead' then
      redis.call('ZADD', KEYS[3], ARGV[5], raw)
      unchanged = unchanged + 1
    elseif fate == 'requeue' then
      local vanished = redis.call('INCR', counter)
      redis.call('EXPIRE', counter, ARGV[3])
      if vanished >= tonumber(ARGV[6]) then
        redis.call('DEL', counter)
        redis.call('RPUSH', KEYS[5], raw)
        quarantined = quarantined + 1
      else
        redis.call('RPUSH', target, raw)
        requeued = requeued + 1
      end
    elseif fate == 'count' then
      local crashes = redis.call('INCR', counter)
      redis.call('EXPIRE', counter, ARGV[3])
      if crashes >= tonumber(ARGV[4]) then
        redis.call('ZADD', KEYS[3], ARGV[5], poison)
        redis.call('DEL', counter)
        poisoned = poisoned + 1
      else
        redis.call('RPUSH', KEYS[5], raw)
        quarantined = quarantined + 1
      end
    else
      redis.call('RPUSH', KEYS[5], raw)
      quarantined = quarantined + 1
    end
  end
end
if quarantined + requeued > 0 then
  redis.call('HINCRBY', KEYS[10], 'recovered', quarantined + requeued)
end
if poisoned > 0 then
  redis.call('HINCRBY', KEYS[10], 'poison', poisoned)
end
if redis.call('LLEN', KEYS[1]) == 0 then
  -- Nothing of the process is left: it leaves swarmd's registry and Sidekiq's process set at once
  -- (Web UI, swarmctl status) instead of when its records expire.
  redis.call('SREM', KEYS[4], ARGV[1])
  redis.call('SREM', KEYS[6], ARGV[1])
  redis.call('DEL', KEYS[7], KEYS[8], KEYS[9])
  if ARGV[2] == '1' then
    redis.call('DEL', KEYS[2])
  end
end
return {quarantined, poisoned, unchanged, requeued}
