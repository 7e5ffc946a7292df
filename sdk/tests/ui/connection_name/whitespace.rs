use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[redis_cluster("   ")]
    cluster: RedisCluster,
}

impl Middleware for Counter {}

fn main() {}
