//! # A plugin crate, tested as its author would test it
//!
//! `blocklist` refuses requests from clients listed in a Redis set and counts each refusal.
//! It is small on purpose: the point of this crate is its `tests/`, which use
//! `redplug-testkit` and nothing else of the workspace, as a plugin crate published on its
//! own would.
//!
//! ```json
//! "extra_config": {
//!   "redis": { "connection_pools": [ { "name": "blocklist", "address": "localhost:6379" } ] },
//!   "plugin/redplug": { "blocklist": { "set": "blocked", "header": "x-client-id" } }
//! }
//! ```
//!
//! Add a client to the set with `SADD {blocked}:members mallory`; `HGETALL {blocked}:refused`
//! shows how often each was turned away.

use http::StatusCode;
use redplug::prelude::*;
use serde::Deserialize;

/// Answers `403 Forbidden` to clients in the configured set, with an `x-refusals` header
/// counting how often that client was refused; marks the requests it lets through with
/// `x-blocklist: passed` and the responses with `x-blocklist-set: <set>`.
#[derive(Plugin)]
#[plugin(name = "blocklist")]
pub struct Blocklist {
    #[redis_pool("blocklist")]
    redis: RedisPool,
    #[redis_script("scripts/check.lua")]
    check: RedisScript,
    #[plugin(config)]
    config: BlocklistConfig,
}

/// `extra_config["plugin/redplug"]["blocklist"]`, or an endpoint's settings for it.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocklistConfig {
    /// The name of the set of blocked clients (default `blocked`): see [`members_key`].
    pub set: String,
    /// The request header that names the client (default `x-client-id`). Requests without it
    /// are let through.
    pub header: String,
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        Self {
            set: "blocked".to_owned(),
            header: "x-client-id".to_owned(),
        }
    }
}

/// The Redis set of the clients blocked under `set`. Its `{hashtag}` keeps it in one cluster
/// slot with [`refusals_key`], which the script needs.
pub fn members_key(set: &str) -> String {
    format!("{{{set}}}:members")
}

/// The Redis hash counting refusals per client under `set`.
pub fn refusals_key(set: &str) -> String {
    format!("{{{set}}}:refused")
}

impl Middleware for Blocklist {
    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        let Some(client) = request
            .headers()
            .get(&self.config.header)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Flow::Continue);
        };
        let refusals: i64 = self
            .check
            .key(members_key(&self.config.set))
            .key(refusals_key(&self.config.set))
            .arg(client)
            .invoke(&mut self.redis.clone())
            .await?;
        if refusals == 0 {
            request
                .headers_mut()
                .insert("x-blocklist", http::HeaderValue::from_static("passed"));
            return Ok(Flow::Continue);
        }
        let refusal = http::Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("x-refusals", refusals)
            .body("blocked\n".into())?;
        Ok(Flow::Respond(refusal))
    }

    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        // `init` refused set names that are not header values.
        if let Ok(set) = http::HeaderValue::try_from(self.config.set.as_str()) {
            response.headers_mut().insert("x-blocklist-set", set);
        }
        Ok(())
    }

    async fn init(&self) -> Result<(), PluginError> {
        if http::HeaderValue::try_from(self.config.set.as_str()).is_err() {
            return Err(PluginError::new(format!(
                "the set name {:?} cannot be shown in a header; use letters, digits and `-_:.`",
                self.config.set
            )));
        }
        Ok(())
    }
}
