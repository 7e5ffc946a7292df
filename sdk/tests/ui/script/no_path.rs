use redplug::prelude::*;

#[derive(Plugin)]
struct Limiter {
    #[redis_script]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
