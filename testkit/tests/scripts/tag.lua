-- Stores ARGV[1] at KEYS[1] and answers the previous value (nil the first time).
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return previous
