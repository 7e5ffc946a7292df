//! `counter`: counts responses per `X-Id` response header.
//!
//! The smallest useful plugin: one field that asks for a named pool, and one hook. The pool
//! `redis_at_eight` must be in `extra_config.redis.connection_pools[]`; whatever `db` it
//! selects is where the counters land.

use redplug::prelude::*;
use redplug::redis::AsyncCommands;

/// Increments `test:from-resp-modifier:<X-Id>` for every response that carries an `X-Id`
/// header. Responses without one are left alone.
#[derive(Plugin)]
#[plugin(name = "counter")]
pub struct Counter {
    // Resolved once at startup. Plain commands run straight on the handle: no lookup, no
    // checkout per request.
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Counter {
    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        let Some(id) = response.headers().get("x-id").and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        // A Redis error becomes a `PluginError` with `?`; the host answers 500 and logs it.
        let _: i64 = self.redis.clone().incr(key(id), 1).await?;
        Ok(())
    }
}

/// The counter key for one `X-Id`.
pub fn key(id: &str) -> String {
    format!("test:from-resp-modifier:{id}")
}
