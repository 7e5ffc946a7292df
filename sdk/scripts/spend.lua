-- Spends ARGV[1] units of the quota at KEYS[1] and answers what is left.
return redis.call('DECRBY', KEYS[1], ARGV[1])
