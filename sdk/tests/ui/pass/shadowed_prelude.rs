// Generated code must name everything by absolute path: this module shadows the prelude
// names and common std items that a careless expansion would pick up.

#![allow(dead_code, non_camel_case_types)]

mod shadowing {
    use ::redplug::prelude::*;

    struct Result;
    struct Option;
    struct Ok;
    struct Err;
    struct Some;
    struct None;
    struct Default;
    struct Box;
    struct Vec;
    struct String;
    struct core;
    struct redplug;
    struct Need;
    trait Into {}
    trait From {}

    #[derive(serde::Deserialize, std::default::Default)]
    struct Settings {
        limit: u64,
    }

    #[derive(Plugin)]
    struct Shadowed {
        #[redis_pool("main")]
        redis: std::option::Option<RedisPool>,
        #[redis_cluster("cluster")]
        cluster: RedisCluster,
        #[redis_selectors]
        selectors: RedisSelectors,
        #[plugin(config)]
        settings: Settings,
        count: u64,
    }

    impl Middleware for Shadowed {}

    pub fn check() {
        assert_eq!(<Shadowed as Plugin>::NAME, "shadowed");
    }
}

fn main() {
    shadowing::check();
}
