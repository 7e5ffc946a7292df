use redplug::prelude::*;

#[derive(Plugin)]
struct Limiter {
    #[redis_script(concat!("scripts/", "limit.lua"))]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
