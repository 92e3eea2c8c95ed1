-- Pace each connection: after each reply, wait a random 0..2*MEAN ms (MEAN = the first script argument)
-- before the next request, so connections do not fire in step. wrk 4.1 has no -R (constant rate, that is
-- wrk2): with C connections this offers about C / (MEAN + latency) requests per second. Latency is measured
-- from each request's send time, so a late request does not count the wait before it (no coordinated-
-- omission correction).
local mean_ms = 10

function init(args)
  mean_ms = tonumber(args[1]) or mean_ms
  math.randomseed(os.time())
end

function delay()
  return math.random(0, 2 * mean_ms)
end
