use redplug::prelude::*;

// `tests/ui.rs` writes `scripts/ok.lua` before the cases compile.
#[derive(Plugin)]
struct Limiter {
    #[redis_pool("counters")]
    #[redis_script("scripts/ok.lua")]
    redis: RedisPool,
}

impl Middleware for Limiter {}

fn main() {}
