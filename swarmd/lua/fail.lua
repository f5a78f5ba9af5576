-- Move a failed job from the private in-flight list into `retry` or `dead`, atomically.
-- KEYS[1] in-flight list   KEYS[2] target zset (retry or dead)
-- KEYS[3] stat:processed   KEYS[4] stat:processed:<today>
-- KEYS[5] stat:failed      KEYS[6] stat:failed:<today>
-- ARGV[1] raw job as fetched   ARGV[2] job to store   ARGV[3] score   ARGV[4] daily stat TTL
-- ARGV[5] "retry", "dead" (then ARGV[6] drop entries scored below it, ARGV[7] keep at most) or "drop"
--         (`retry: false`: counted as failed, stored nowhere, as in Sidekiq)
-- KEYS[7] (optional) the job's unique lock, released (ARGV's last value: its jid) when the job goes to
--         `dead` or is dropped, only if the lock still holds that jid
-- Returns 1, or 0 when the job was no longer in the in-flight list (it was pushed back or recovered
-- meanwhile and will run again from its queue, so storing it here too would duplicate it).
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return 0
end
if ARGV[5] ~= 'drop' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
for _, k in ipairs({KEYS[3], KEYS[5]}) do redis.call('INCR', k) end
for _, k in ipairs({KEYS[4], KEYS[6]}) do
  redis.call('INCR', k)
  redis.call('EXPIRE', k, ARGV[4])
end
if ARGV[5] == 'dead' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[7]) + 1))
end
if KEYS[7] and ARGV[5] ~= 'retry' and redis.call('GET', KEYS[7]) == ARGV[#ARGV] then
  redis.call('DEL', KEYS[7])
end
return 1
