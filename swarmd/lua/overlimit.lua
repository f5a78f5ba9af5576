-- Reschedule a job whose limiter stayed over its limit (swarmd.OverLimit): from the private in-flight
-- list to `schedule`, atomically. Not counted as processed nor as failed; its retries are untouched.
-- KEYS[1] in-flight list   KEYS[2] `schedule`
-- ARGV[1] raw job as fetched   ARGV[2] the job as it is stored (its `overrated` count one higher)
-- ARGV[3] score: when it runs again (epoch seconds)
-- Returns 1, or 0 when the job was no longer in the in-flight list (pushed back or recovered meanwhile,
-- so it runs again from its queue; scheduling it too would duplicate it).
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
