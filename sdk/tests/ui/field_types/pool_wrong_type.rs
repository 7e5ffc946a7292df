use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_pool("redis_at_eight")]
    redis: String,
}

impl Middleware for Counter {}

fn main() {}
