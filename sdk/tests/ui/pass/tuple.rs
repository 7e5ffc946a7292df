// Tuple structs: fields are named `0`, `1`, ... in `Plugin::NEEDS`.
// Fields are read only by plugin hooks, which these cases do not write.
#![allow(dead_code)]

use redplug::prelude::*;

#[derive(Plugin)]
struct Cache(
    #[redis_pool("cache")] RedisPool,
    #[redis_selectors] RedisSelectors,
    u32,
);

impl Middleware for Cache {}

fn main() {
    assert_eq!(<Cache as Plugin>::NAME, "cache");
    assert_eq!(<Cache as Plugin>::NEEDS[0].field, "0");
}
