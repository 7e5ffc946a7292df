use redplug::prelude::*;

#[derive(Plugin)]
struct Counter<T> {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
    value: T,
}

impl<T: Send + Sync + 'static> Middleware for Counter<T> {}

fn main() {}
