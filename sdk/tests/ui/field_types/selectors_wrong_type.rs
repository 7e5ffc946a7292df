use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_selectors]
    selectors: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
