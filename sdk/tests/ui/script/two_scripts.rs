use redplug::prelude::*;

// `tests/ui.rs` writes `scripts/ok.lua` before the cases compile.
#[derive(Plugin)]
struct Limiter {
    #[redis_script("scripts/ok.lua")]
    #[redis_script("scripts/ok.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
