-- Move entries of `retry` or `schedule` to `dead` (Sidekiq's Kill), each only if this call removed it.
-- KEYS[1] the zset the entries are in   KEYS[2] `dead`
-- ARGV[1] now (their score in `dead`)   ARGV[2] drop entries of `dead` scored below it
-- ARGV[3] keep at most this many entries in `dead`   ARGV[4..] the members, exactly as read
-- Returns how many moved.
--
-- ZREM and ZADD are in one script: a job is never in both sets nor in neither, and when two admins
-- (or an admin and the scheduler) act on the same entry, only the one whose ZREM removed it moves it.
-- The member goes to `dead` unchanged, as Sidekiq's DeadSet#kill stores it; `dead` is then trimmed
-- like lua/fail.lua does (by age, then by size).
local moved = 0
for i = 4, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
end
return moved
