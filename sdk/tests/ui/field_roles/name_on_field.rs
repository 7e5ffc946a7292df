use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[plugin(name = "counter")]
    hits: u64,
}

impl Middleware for Counter {}

fn main() {}
