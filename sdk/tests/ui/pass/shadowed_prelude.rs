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
    struct RedisScript;
    struct PluginScript;
    struct Injections;
    macro_rules! include_str {
        ($($t:tt)*) => {
            "shadowed"
        };
    }
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
        // `tests/ui.rs` writes `scripts/ok.lua` before the cases compile.
        #[redis_script("scripts/ok.lua")]
        script: ::redplug::RedisScript,
        count: u64,
    }

    impl Middleware for Shadowed {}

    pub fn check() {
        assert_eq!(<Shadowed as Plugin>::NAME, "shadowed");
        assert_eq!(<Shadowed as Plugin>::SCRIPTS[0].script.source(), "return 1");
    }
}

fn main() {
    shadowing::check();
}
