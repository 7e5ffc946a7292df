use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[plugin(config)]
    config: Settings,
}

impl Middleware for Counter {}

fn main() {}

struct Settings {
    limit: u64,
}
