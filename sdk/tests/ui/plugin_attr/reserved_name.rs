use redplug::prelude::*;

// `name` lists the plugins of an endpoint in the config, so no plugin may be called that.
#[derive(Plugin)]
#[plugin(name = "name")]
struct Named;

impl Middleware for Named {}

// The default name, from the type, is checked too.
#[derive(Plugin)]
struct MaxBodyBytes;

impl Middleware for MaxBodyBytes {}

fn main() {}
