// Every kind of field the derive knows, on one struct.
// Fields are read only by plugin hooks, which these cases do not write.
#![allow(dead_code)]

use std::sync::atomic::AtomicU64;

use redplug::prelude::*;

#[derive(serde::Deserialize)]
pub struct CounterConfig {
    pub limit: u64,
}

#[derive(Plugin)]
#[plugin(name = "counter")]
pub struct Counter {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
    #[redis_cluster("shared_cluster")]
    cluster: Option<RedisCluster>,
    #[redis_selectors]
    selectors: RedisSelectors,
    #[plugin(config)]
    config: CounterConfig,
    hits: AtomicU64,
}

impl Middleware for Counter {}

fn main() {
    assert_eq!(<Counter as Plugin>::NAME, "counter");
    assert_eq!(<Counter as Plugin>::NEEDS.len(), 2);
}
