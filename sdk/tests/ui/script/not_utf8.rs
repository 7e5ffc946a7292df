use redplug::prelude::*;

// `tests/ui.rs` writes this file, with a byte that is not UTF-8, before the cases compile.
#[derive(Plugin)]
struct Limiter {
    #[redis_script("scripts/not_utf8.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
