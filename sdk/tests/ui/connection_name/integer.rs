use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool(8)]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
