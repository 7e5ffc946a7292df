// Every mistake is reported in one build, each on its own token.

use redplug::prelude::*;

#[derive(Plugin)]
#[plugin(name = "")]
struct Counter {
    #[redis_pool(eight)]
    redis: RedisPool,
    #[redis_cluster("")]
    cluster: RedisCluster,
    #[redis_selectors]
    #[redis_pool("redis_at_nine")]
    selectors: RedisSelectors,
}

impl Middleware for Counter {}

fn main() {}
