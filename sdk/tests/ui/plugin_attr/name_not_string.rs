use redplug::prelude::*;

#[derive(Plugin)]
#[plugin(name = counter)]
struct Counter {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
