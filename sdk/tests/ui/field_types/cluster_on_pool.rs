use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_cluster("shared_cluster")]
    cluster: RedisPool,
}

impl Middleware for Counter {}

fn main() {}
