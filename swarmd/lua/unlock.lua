-- Release unique locks, each only if it still holds the given jid (it may have expired and been
-- taken by another job since: that lock is not this job's to release).
-- KEYS[i] a lock (swarmd:unique:<digest>)   ARGV[i] the jid that took it
-- Returns how many locks were released.
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
