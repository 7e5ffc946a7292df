use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[plugin(config)]
    limits: Settings,
    #[plugin(config)]
    more_limits: Settings,
}

impl Middleware for Counter {}

fn main() {}

#[derive(serde::Deserialize, Default)]
struct Settings {
    limit: u64,
}
