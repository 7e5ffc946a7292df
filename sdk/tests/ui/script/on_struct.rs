use redplug::prelude::*;

#[derive(Plugin)]
#[redis_script("scripts/limit.lua")]
struct Limiter {
    #[redis_pool("counters")]
    redis: RedisPool,
}

impl Middleware for Limiter {}

fn main() {}
