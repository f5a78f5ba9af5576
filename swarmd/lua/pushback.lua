-- Put jobs from a private in-flight list back at the head of their queues (RPUSH: consumers take
-- from the right). Each job moves only if this call removed it from the in-flight list, so two
-- callers can never push the same entry back twice, and a job is never in neither place.
-- KEYS[1]   in-flight list        KEYS[2]   `dead`
-- KEYS[3..] for each job, its queue key (or the quarantine list, for a quarantine worker's job or a
--           recycled worker's suspect: the head of a list is its right end there too), or the `dead`
--           key for a job that cannot be decoded (it goes to `dead` unchanged)
-- ARGV[1]   score for entries sent to `dead`;   ARGV[2..] the raw jobs, aligned with KEYS[3..]
-- Returns how many jobs were moved.
local moved = 0
for i = 3, #KEYS do
  local job = ARGV[i - 1]
  if redis.call('LREM', KEYS[1], -1, job) > 0 then
    if KEYS[i] == KEYS[2] then
      redis.call('ZADD', KEYS[2], ARGV[1], job)
    else
      redis.call('RPUSH', KEYS[i], job)
    end
    moved = moved + 1
  end
end
return moved
