//! # redplug example plugins
//!
//! Two small plugins that show the whole plugin-author API, and the `redplug` binary
//! (`src/bin/redplug.rs`) that links them so `redplug check` and `redplug plugins` can see them.
//!
//! - [`counter`]: a response hook that counts responses per `X-Id` header in one named pool.
//! - [`rate_limit`]: a request hook that answers `429 Too Many Requests` once a client has used
//!   up its budget for the sliding window; it has a typed config of its own, and decides in a
//!   Lua script (`scripts/rate_limit.lua`, a `#[redis_script]` field) so that counting and
//!   deciding are one step on the server.
//!
//! A plugin is a struct that derives [`Plugin`](redplug::Plugin) and implements
//! [`Middleware`](redplug::Middleware). Each field names the connection it needs; the runtime
//! fills the fields at startup, and refuses to start if a required name is not configured.
//! Both plugins here run against this gateway config:
//!
//! ```json
//! {
//!   "version": 3,
//!   "extra_config": {
//!     "redis": {
//!       "connection_pools": [
//!         { "name": "redis_at_eight", "address": "localhost:6379", "db": 8 },
//!         { "name": "ratelimit_counters", "address": "localhost:6379", "db": 1 }
//!       ]
//!     },
//!     "plugin/redplug": {
//!       "rate_limit": { "limit": 100, "window": "1m", "key_header": "x-api-key" }
//!     }
//!   }
//! }
//! ```
//!
//! ## Linking
//!
//! Plugins register themselves when their crate is linked into the binary. A binary that never
//! names this crate would run without them, so the host names it once:
//!
//! ```
//! use redplug_example_plugins as _;
//! ```
//!
//! or, for several crates, `redplug::link!(redplug_example_plugins, other_plugins);`.

pub mod counter;
pub mod rate_limit;

pub use counter::Counter;
pub use rate_limit::{RateLimit, RateLimitConfig};
