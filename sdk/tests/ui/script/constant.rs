use redplug::prelude::*;

const LIMIT_LUA: &str = "scripts/limit.lua";

#[derive(Plugin)]
struct Limiter {
    #[redis_script(LIMIT_LUA)]
    limit: RedisScript,
}

impl Middleware for Limiter {}

fn main() {}
