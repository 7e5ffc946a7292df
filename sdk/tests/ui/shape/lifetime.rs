use redplug::prelude::*;

#[derive(Plugin)]
struct Counter<'a> {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
    prefix: &'a str,
}

impl Middleware for Counter<'static> {}

fn main() {}
