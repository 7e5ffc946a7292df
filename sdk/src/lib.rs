//! # redplug
//!
//! Managed Redis connections for API-gateway plugins. A plugin declares, on its own struct,
//! which named connection each field needs; the gateway's runtime builds every pool and cluster
//! from a KrakenD-style config once, resolves each plugin's names once at startup, and hands the
//! plugin its connections already in its fields. Request-time code never looks anything up.
//!
//! ```
//! use redplug::prelude::*;
//! use redplug::redis::AsyncCommands;
//!
//! #[derive(Plugin)]
//! #[plugin(name = "counter")]
//! pub struct Counter {
//!     // The pool named `redis_at_eight` in `extra_config.redis.connection_pools[]`.
//!     #[redis_pool("redis_at_eight")]
//!     redis: RedisPool,
//! }
//!
//! impl Middleware for Counter {
//!     async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
//!         let Some(id) = response.headers().get("x-id").and_then(|v| v.to_str().ok()) else {
//!             return Ok(());
//!         };
//!         let _: i64 = self.redis.clone().incr(format!("test:from-resp-modifier:{id}"), 1).await?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! ## Field attributes
//!
//! | attribute | field type | gets |
//! |---|---|---|
//! | `#[redis_pool("name")]` | [`RedisPool`] or `Option<RedisPool>` | the pool of that name |
//! | `#[redis_cluster("name")]` | [`RedisCluster`] or `Option<RedisCluster>` | the cluster of that name |
//! | `#[redis_selectors]` | [`RedisSelectors`] | lookups by name, for names chosen at run time |
//! | `#[redis_script("path")]` | [`RedisScript`] | the Lua file at `path` (relative to the crate's `Cargo.toml`), read and hashed at compile time |
//! | `#[plugin(config)]` | any `serde::Deserialize` type | `extra_config["plugin/redplug"]["<plugin name>"]` |
//! | none | any `Default` type | `Default::default()` |
//!
//! A required name that the config does not define stops the gateway at startup with a list of
//! every unresolved name and a suggestion; an `Option` field gets `None` and a warning instead.
//! The plugin's name is `#[plugin(name = "...")]`, or the type's name in snake_case.
//!
//! ## Lua scripts
//!
//! `#[redis_script("scripts/limit.lua")] limit: RedisScript` reads the file when the crate
//! compiles (a missing file or one that is not UTF-8 is a compile error) and rebuilds the crate
//! when it changes. The runtime loads each plugin's scripts into the servers of the pools and
//! clusters it was given before the plugin's `init`, and refuses to start, naming plugin, field
//! and file, when a script does not compile on the server. At request time
//! `self.limit.key(k).arg(n).invoke(&mut self.redis.clone())` sends `EVALSHA`, falling back to
//! `EVAL` when a server lost the script (a restart, a failover, `SCRIPT FLUSH`). See
//! [`RedisScript`].
//!
//! ## Durations in a plugin's config
//!
//! KrakenD writes every duration as a Go duration string (`"5s"`, `"1h30m"`); a plugin's own
//! config can too, with a [`duration::GoDuration`] field.
//!
//! ## Plugins in other crates
//!
//! Plugins register themselves through `inventory` when their crate is linked. A crate the
//! binary never mentions is not linked, and its plugins would silently be missing; name such
//! crates once in the binary with [`link!`]: `redplug::link!(my_plugins, more_plugins);`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod duration;
mod error;
mod handle;
pub mod host;
mod middleware;
mod registry;
mod script;
mod selectors;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use redis;

pub use error::{BuildError, PluginError};
pub use handle::{ClusterConnection, PoolStatus, PooledConnection, RedisCluster, RedisPool};
pub use middleware::{Bodies, Flow, Middleware, Request, Response};
pub use registry::{Need, NeedKind, Plugin, PluginScript, Registration, SourceLocation};
pub use script::{RedisScript, ScriptCall};
pub use selectors::RedisSelectors;

/// Derives [`Plugin`](trait@Plugin) for a struct whose fields name the Redis connections it needs.
///
/// Every kind of field at once:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use redplug::prelude::*;
/// use redplug::redis::AsyncCommands;
///
/// #[derive(serde::Deserialize, Default)]
/// struct CounterConfig {
///     prefix: String,
/// }
///
/// #[derive(Plugin)]
/// #[plugin(name = "counter")] // the default would be "counter" too: the type name in snake_case
/// pub struct Counter {
///     #[redis_pool("redis_at_eight")] // required: startup fails if the config lacks it
///     redis: RedisPool,
///     #[redis_cluster("shared_cluster")] // optional: None when the config lacks it
///     cluster: Option<RedisCluster>,
///     #[redis_selectors] // lookups by name, for names chosen at run time
///     selectors: RedisSelectors,
///     #[plugin(config)] // extra_config["plugin/redplug"]["counter"], or Default when absent
///     config: CounterConfig,
///     hits: AtomicU64, // no attribute: Default::default()
/// }
///
/// impl Middleware for Counter {
///     async fn on_response(&self, _response: &mut Response) -> Result<(), PluginError> {
///         self.hits.fetch_add(1, Ordering::Relaxed);
///         let key = format!("{}:hits", self.config.prefix);
///         let _: i64 = self.redis.clone().incr(&key, 1).await?;
///         if let Some(cluster) = &self.cluster {
///             let _: i64 = cluster.clone().incr(&key, 1).await?;
///         }
///         if let Some(audit) = self.selectors.pool("audit") {
///             let _: () = audit.clone().set("last", &key).await?;
///         }
///         Ok(())
///     }
/// }
/// ```
///
/// Attributes: `#[plugin(name = "...")]` and `#[plugin(crate = "path")]` (for a renamed
/// `redplug` dependency) on the struct; `#[redis_pool("name")]`, `#[redis_cluster("name")]`,
/// `#[redis_selectors]`, `#[redis_script("path")]` (a [`RedisScript`] read from a file of the
/// crate) and `#[plugin(config)]` on fields. Generic structs, enums and unions are
/// rejected at compile time, as is a plugin without `impl Middleware`.
pub use redplug_macros::Plugin;

/// Makes sure plugin crates that the binary never mentions are linked, so their plugins
/// register. Write it once in the binary: `redplug::link!(my_plugins, more_plugins);`.
#[macro_export]
macro_rules! link {
    ($($krate:ident),+ $(,)?) => {
        $(
            #[allow(unused_imports)]
            use $krate as _;
        )+
    };
}

/// Everything a plugin file needs: `use redplug::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Bodies, Flow, Middleware, Plugin, PluginError, RedisCluster, RedisPool, RedisScript,
        RedisSelectors, Request, Response,
    };
}
