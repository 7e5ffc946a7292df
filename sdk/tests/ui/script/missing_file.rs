use redplug::prelude::*;

#[derive(Plugin)]
struct Limiter {
    #[redis_script("scripts/missing.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
