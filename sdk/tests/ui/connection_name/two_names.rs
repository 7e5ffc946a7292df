use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool("redis_at_eight", "redis_at_nine")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
