use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[plugin(confg)]
    config: u64,
}

impl Middleware for Counter {}

fn main() {}
