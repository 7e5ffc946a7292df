-- A sliding-window log: one sorted-set entry per admitted request, scored with the time it was
-- admitted. A request is admitted while fewer than `limit` entries are younger than `window`.
--
-- KEYS[1]  the client's log, such as `ratelimit:alice`
-- ARGV[1]  limit: requests admitted per window
-- ARGV[2]  window, in milliseconds
--
-- Answers {1, 0} when the request is admitted, and {0, wait} when it is not, `wait` being the
-- milliseconds until the oldest entry leaves the window and a request is admitted again.
--
-- The clock is the server's (`TIME`), so gateways whose clocks disagree still share one window.
-- Redis runs the script as a unit: concurrent requests of one client cannot both take the last
-- place in the window.

local log = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local window_us = window_ms * 1000

local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Entries that left the window no longer count.
redis.call('ZREMRANGEBYSCORE', log, '-inf', now_us - window_us)

local used = redis.call('ZCARD', log)
if used < limit then
  -- The member only has to be unique: the time as the server gave it, and the place taken.
  redis.call('ZADD', log, now_us, time[1] .. '.' .. time[2] .. '#' .. used)
  -- The log outlives its newest entry by one window, then nothing in it counts any more.
  redis.call('PEXPIRE', log, window_ms)
  return {1, 0}
end

local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
if oldest[2] == nil then
  -- A limit of 0 admits nothing: try again after a whole window.
  return {0, window_ms}
end
local wait_us = tonumber(oldest[2]) + window_us - now_us
return {0, math.ceil(wait_us / 1000)}
