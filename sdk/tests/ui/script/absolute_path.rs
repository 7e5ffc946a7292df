use redplug::prelude::*;

#[derive(Plugin)]
struct Limiter {
    #[redis_script("/etc/scripts/limit.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
