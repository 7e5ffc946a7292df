use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool(name = "redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
