use redplug::prelude::*;

#[derive(Plugin)]
struct Counter {
    #[plugin(config, config)]
    config: Settings,
}

impl Middleware for Counter {}

fn main() {}

#[derive(serde::Deserialize, Default)]
struct Settings {
    limit: u64,
}
