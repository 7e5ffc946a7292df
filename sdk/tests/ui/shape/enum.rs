use redplug::prelude::*;

#[derive(Plugin)]
enum Counter {
    Eight(RedisPool),
    Nine(RedisPool),
}

impl Middleware for Counter {}

fn main() {}
