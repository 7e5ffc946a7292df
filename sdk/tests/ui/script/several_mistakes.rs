use redplug::prelude::*;

// Every script mistake of the struct is reported in one build.
#[derive(Plugin)]
struct Limiter {
    #[redis_script("scripts/missing.lua")]
    limit: RedisScript,
    #[redis_script(" scripts/padded.lua ")]
    padded: RedisScript,
    #[redis_script(7)]
    number: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
