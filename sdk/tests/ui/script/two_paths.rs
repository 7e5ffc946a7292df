use redplug::prelude::*;

#[derive(Plugin)]
struct Limiter {
    #[redis_script("scripts/limit.lua", "scripts/other.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
