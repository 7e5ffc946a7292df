use redplug::prelude::*;

#[derive(Plugin)]
#[plugin(config)]
struct Counter {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
