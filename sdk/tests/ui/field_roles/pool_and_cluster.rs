use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool("redis_at_eight")]
    #[redis_cluster("shared_cluster")]
    redis: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
