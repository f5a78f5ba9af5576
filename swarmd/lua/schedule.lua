-- Move due jobs from `schedule` or `retry` into their queues, each exactly once.
-- KEYS[1] the zset   KEYS[2] `queues`   KEYS[3] `dead`
-- KEYS[3+i] for job i: its queue key, or `dead` for a member that cannot be decoded
-- ARGV[1] now (score for `dead`)
-- ARGV[3i-1] member as read from the zset, ARGV[3i] the job as it goes into the queue (with a fresh
-- enqueued_at), ARGV[3i+1] the queue name
-- A job moves only if this call removed it from the zset (ZREM returned 1): however many workers poll
-- at once, one of them moves it and the others skip it. ZREM and LPUSH are in one script, so there is
-- no moment when the job is in neither place.
local moved = 0
for i = 1, #KEYS - 3 do
  local member, job, queue = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    if KEYS[3 + i] == KEYS[3] then
      redis.call('ZADD', KEYS[3], ARGV[1], member)
    else
      redis.call('LPUSH', KEYS[3 + i], job)
      redis.call('SADD', KEYS[2], queue)
    end
    moved = moved + 1
  end
end
return moved
