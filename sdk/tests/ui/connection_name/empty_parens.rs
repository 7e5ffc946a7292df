use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool()]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
