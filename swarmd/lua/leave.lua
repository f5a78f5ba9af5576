-- A worker leaves at a clean exit: out of `processes`, its busy-job hashes and liveness key gone.
-- It leaves swarmd's registry only if its private list is empty, checked in this same atomic step:
-- a job that landed there late (a fetch racing the exit) keeps the registry entry, and with the
-- liveness key gone any worker recovers it at its next recovery pass.
-- KEYS[1] `processes`  KEYS[2] <identity>:work  KEYS[3] <identity>:workers  KEYS[4] liveness key
-- KEYS[5] swarmd:workers  KEYS[6] the private list      ARGV[1] identity
-- Returns 1 when the registry entry was removed, 0 when the private list still holds jobs.
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
if redis.call('LLEN', KEYS[6]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[1])
  return 1
end
return 0
