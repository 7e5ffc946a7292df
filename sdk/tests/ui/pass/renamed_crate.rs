// `#[plugin(crate = "...")]` for a crate that reaches redplug under another path.
// Fields are read only by plugin hooks, which these cases do not write.
#![allow(dead_code)]

mod sdk {
    pub use ::redplug::*;
}

use redplug::prelude::*;

#[derive(Plugin)]
#[plugin(crate = "crate::sdk", name = "renamed")]
struct Renamed {
    #[redis_pool("main")]
    redis: Option<RedisPool>,
}

impl Middleware for Renamed {}

fn main() {
    assert_eq!(<Renamed as sdk::Plugin>::NAME, "renamed");
    assert!(<Renamed as sdk::Plugin>::NEEDS[0].optional);
}
