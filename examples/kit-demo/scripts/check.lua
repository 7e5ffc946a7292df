-- Is the client blocked? Counts the refusal if it is.
--
-- KEYS[1]  the set of blocked clients
-- KEYS[2]  a hash of refusals per client
-- ARGV[1]  the client
--
-- Answers 0 for a client that is not blocked, and otherwise how many times it has been refused,
-- this time included. One script, so that the check and the count are one step on the server.

if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return 0
end
return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
