use redplug::prelude::*;

#[derive(Plugin)]
union Counter {
    hits: u64,
    misses: u32,
}

impl Middleware for Counter {}

fn main() {}
