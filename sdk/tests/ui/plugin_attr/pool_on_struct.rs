use redplug::prelude::*;

#[derive(Plugin)]
#[redis_pool("redis_at_eight")]
struct Counter {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
