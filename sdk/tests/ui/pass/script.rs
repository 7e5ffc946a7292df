use redplug::prelude::*;

// `tests/ui.rs` writes `scripts/ok.lua` (`return 1`) before the cases compile.
#[derive(Plugin)]
struct Limiter {
    #[redis_pool("counters")]
    redis: Option<RedisPool>,
    #[redis_script("scripts/ok.lua")]
    limit: RedisScript,
}

impl Middleware for Limiter {
    async fn on_request(&self, _request: &mut Request) -> Result<Flow, PluginError> {
        if let Some(redis) = &self.redis {
            let _: i64 = self.limit.key("k").arg(1).invoke(&mut redis.clone()).await?;
        }
        Ok(Flow::Continue)
    }
}

fn main() {
    let [script] = Limiter::SCRIPTS else {
        panic!("one script");
    };
    assert_eq!(script.field, "limit");
    assert_eq!(script.script.path(), "scripts/ok.lua");
    assert_eq!(script.script.source(), "return 1");
    assert_eq!(script.script.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}
