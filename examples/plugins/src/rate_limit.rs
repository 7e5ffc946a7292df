//! `rate_limit`: a sliding-window request limiter keyed by a request header, as a Lua script.
//!
//! Shows a plugin with a typed config of its own: `#[plugin(config)]` deserializes
//! `extra_config["plugin/redplug"]["rate_limit"]` with serde at startup, so a bad value stops
//! the gateway with its JSON path instead of failing on the first request. The config may be
//! left out; then [`RateLimitConfig::default`] applies.
//!
//! And a plugin with a Lua script: `#[redis_script("scripts/rate_limit.lua")]` reads
//! `examples/plugins/scripts/rate_limit.lua` when the crate compiles. The runtime loads it into
//! the `ratelimit_counters` server at startup; each request runs it with `EVALSHA`, and with
//! `EVAL` when the server lost it (restart, failover, `SCRIPT FLUSH`).
//!
//! ```json
//! "plugin/redplug": {
//!   "rate_limit": { "limit": 100, "window": "1m", "key_header": "x-api-key" }
//! }
//! ```

use std::time::Duration;

use http::StatusCode;
use http::header::RETRY_AFTER;
use redplug::duration::parse_duration;
use redplug::prelude::*;
use serde::{Deserialize, Deserializer};

/// Allows each client `limit` requests in any `window` (a sliding window) and answers the rest
/// with `429 Too Many Requests` and a `retry-after` header: the whole seconds until the oldest
/// request counted leaves the window.
///
/// Clients are told apart by the `key_header` request header; requests without it share one
/// budget (`ratelimit:anonymous`), so leaving the header out is no way around the limit.
///
/// Listed at several endpoints, each place counts under its own `key_prefix`, so that each has
/// a budget of its own; places that share a prefix share their budget.
#[derive(Plugin)]
#[plugin(name = "rate_limit")]
pub struct RateLimit {
    #[redis_pool("ratelimit_counters")]
    redis: RedisPool,
    /// Admits or refuses one request of one client, atomically (see the file).
    #[redis_script("scripts/rate_limit.lua")]
    admit: RedisScript,
    #[plugin(config)]
    config: RateLimitConfig,
}

/// `extra_config["plugin/redplug"]["rate_limit"]`. Every key is optional; unknown keys are an
/// error, so a misspelt option cannot silently fall back to its default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests allowed per client per window (default 10).
    pub limit: u64,
    /// The window, as a Go duration such as `"1s"`, `"1m"` or `"1h30m"` (default `"1s"`).
    #[serde(deserialize_with = "window")]
    pub window: Duration,
    /// The request header that identifies a client (default `x-client-id`).
    pub key_header: String,
    /// The start of every client's key (default `ratelimit`): `<key_prefix>:<client>`, a
    /// sorted set of the times of the client's requests in the current window.
    pub key_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            limit: 10,
            window: Duration::from_secs(1),
            key_header: "x-client-id".to_owned(),
            key_prefix: "ratelimit".to_owned(),
        }
    }
}

impl Middleware for RateLimit {
    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        let client = request
            .headers()
            .get(&self.config.key_header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous");
        let key = format!("{}:{client}", self.config.key_prefix);
        let window_ms = u64::try_from(self.config.window.as_millis()).unwrap_or(u64::MAX);

        // One round trip, applied as a unit on the server: forget requests older than the
        // window, then count this one if there is room.
        let (admitted, wait_ms): (i64, i64) = self
            .admit
            .key(&key)
            .arg(self.config.limit)
            .arg(window_ms)
            .invoke(&mut self.redis.clone())
            .await?;
        if admitted == 1 {
            return Ok(Flow::Continue);
        }

        // `retry-after` is in whole seconds; round up so a client that obeys it is let in.
        let retry_after = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1);
        let response = http::Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(RETRY_AFTER, retry_after)
            .body("rate limit exceeded\n".into())?;
        Ok(Flow::Respond(response))
    }
}

/// Reads `window` as a Go duration, the way every duration in the gateway config is written.
fn window<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    use serde::de::Error;

    let text = String::deserialize(deserializer)?;
    let duration = parse_duration(&text).map_err(|e| D::Error::custom(format!("{text:?}: {e}")))?;
    match duration.to_std() {
        Some(window) if window >= Duration::from_millis(1) => Ok(window),
        _ => Err(D::Error::custom(format!(
            "{text:?} is not a usable window; write a positive duration such as \"1s\" or \"1m\""
        ))),
    }
}
