use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_selectors("redis_at_eight")]
    selectors: RedisSelectors,
}

impl Middleware for Counter {}

fn main() {}
