-- Acknowledge finished jobs and fetch new ones, in one atomic step and one round trip.
-- KEYS[1]  the worker's private in-flight list
-- KEYS[2]  stat:processed         KEYS[3]  stat:processed:<today>
-- KEYS[4..] queue keys, in the order to try them
-- ARGV[1]  how many jobs to fetch at most
-- ARGV[2]  TTL of the daily stat key (seconds)
-- ARGV[3]  n, the number of shares that follow (0, or one per queue key)
-- ARGV[4..3+n]  shares: with random or weighted queue order, how many of the jobs to take from each
--          queue first (the worker drew a queue for every job, as Sidekiq draws one per fetch);
--          then the rest is taken from the queues in order, as without shares
-- ARGV[4+n..] raw jobs that finished: removed from the in-flight list and counted as processed
-- Returns a flat array: queue index (0-based into KEYS[4..]), raw job, queue index, raw job, ...
-- A queue key that is not a list (WRONGTYPE) is skipped, so it cannot starve the others: it appears
-- as -1 - its index, followed by the error text, once per call.
--
-- A fetched job is in the in-flight list before this script returns: if the reply is lost or the
-- worker dies, the job is still in Redis, where reconcile or recovery finds it.
local inflight = KEYS[1]
local nshares = tonumber(ARGV[3])
local acked = 0
for i = 4 + nshares, #ARGV do
  acked = acked + redis.call('LREM', inflight, -1, ARGV[i])
end
if acked > 0 then  -- an ack sent again after a lost reply removes nothing and counts nothing
  redis.call('INCRBY', KEYS[2], acked)
  redis.call('INCRBY', KEYS[3], acked)
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
local want = tonumber(ARGV[1])
local out = {}
local broken = {}
local function take(k, n)
  local got = redis.pcall('RPOP', KEYS[k], n)
  if type(got) == 'table' and got.err then
    if not broken[k] then
      broken[k] = true
      out[#out + 1] = -1 - (k - 4)
      out[#out + 1] = got.err
    end
  elseif got then
    redis.call('LPUSH', inflight, unpack(got))
    for _, job in ipairs(got) do
      out[#out + 1] = k - 4
      out[#out + 1] = job
    end
    want = want - #got
  end
end
for s = 1, nshares do
  local share = math.min(tonumber(ARGV[3 + s]), want)
  if share > 0 and not broken[3 + s] then take(3 + s, share) end
end
for k = 4, #KEYS do
  if want <= 0 then break end
  if not broken[k] then take(k, want) end
end
return out
