-- Does not compile: `=` where Lua expects an expression.
local total = = redis.call('GET', KEYS[1])
return total
