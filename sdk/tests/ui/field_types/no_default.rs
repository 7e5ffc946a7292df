use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    hits: Hits,
}

impl Middleware for Counter {}

fn main() {}

struct Hits(u64);
