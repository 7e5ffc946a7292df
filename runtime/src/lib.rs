//! # redplug-runtime
//!
//! The host side of redplug: reads the gateway's config, builds every Redis pool and cluster
//! once, builds every registered plugin with its connections injected, and runs plugins around
//! requests.
//!
//! ## Start a runtime
//!
//! [`Runtime`] reads a KrakenD-style config (`extra_config.redis` for connections,
//! `extra_config["plugin/redplug"]` for plugins' own settings) and builds every plugin linked
//! into the binary. Pools connect lazily, so this runs without a Redis server:
//!
//! ```
//! use redplug::prelude::*;
//!
//! #[derive(Plugin)]
//! struct Hits {
//!     #[redis_pool("cache")]
//!     redis: RedisPool,
//! }
//!
//! impl Middleware for Hits {}
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = redplug_runtime::Runtime::from_json(
//!     r#"{"extra_config": {"redis": {"connection_pools": [
//!         {"name": "cache", "address": "localhost:6379"}
//!     ]}}}"#,
//! )
//! .await?;
//! let hits = runtime.get::<Hits>().expect("Hits is linked into this binary");
//! assert_eq!(hits.redis.name(), "cache");
//! runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A plugin field whose name the config lacks stops startup with every such field listed, and
//! a config with problems stops it with every problem and its JSON path ([`StartupError`]).
//!
//! ## Run plugins around a request
//!
//! A [`Pipeline`] is an ordered list of plugins, looked up by name once. It calls each
//! plugin's `on_request`, then the backend, then each `on_response` in reverse order:
//!
//! ```
//! use redplug::prelude::*;
//! use redplug_runtime::{Pipeline, Runtime};
//!
//! #[derive(Plugin)]
//! #[plugin(name = "stamp")]
//! struct Stamp;
//!
//! impl Middleware for Stamp {
//!     async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
//!         response.headers_mut().insert("x-stamped", "yes".parse().unwrap());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::builder().only_plugins(["stamp"]).start_json("{}").await?;
//! let pipeline = Pipeline::new(&runtime, ["stamp"])?;
//! let request = http::Request::new(bytes::Bytes::from("hello"));
//! let response = pipeline
//!     .run(request, |request| async move { http::Response::new(request.into_body()) })
//!     .await;
//! assert_eq!(response.headers()["x-stamped"], "yes");
//! assert_eq!(response.body(), "hello");
//! # Ok(())
//! # }
//! ```
//!
//! ## In a tower or axum server
//!
//! [`PluginLayer`] (feature `tower`, on by default) runs a pipeline around any tower HTTP
//! service:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use redplug::prelude::*;
//! use redplug_runtime::{Pipeline, PluginLayer, Runtime};
//! use tower::{Layer, ServiceExt};
//!
//! #[derive(Plugin)]
//! #[plugin(name = "gate")]
//! struct Gate;
//!
//! impl Middleware for Gate {
//!     async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
//!         if request.headers().contains_key("x-blocked") {
//!             let mut refusal = Response::new("blocked\n".into());
//!             *refusal.status_mut() = http::StatusCode::FORBIDDEN;
//!             return Ok(Flow::Respond(refusal));
//!         }
//!         Ok(Flow::Continue)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::builder().only_plugins(["gate"]).start_json("{}").await?;
//! let backend = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::from("from the backend")))
//! });
//! let service = PluginLayer::new(Pipeline::new(&runtime, ["gate"])?).layer(backend);
//! let blocked = http::Request::builder()
//!     .header("x-blocked", "1")
//!     .body(Full::default())?;
//! let response = service.oneshot(blocked).await?;
//! assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! ## The `redplug` command line
//!
//! [`cli`] (feature `cli`, on by default) is `redplug check`, `redplug plugins` and
//! `redplug serve`, for a host binary to embed with one call: `redplug_runtime::cli::run()`.
//!
//! ## Serve a krakend.json
//!
//! [`serve::Gateway`] (feature `serve`, part of `cli`) serves [`Runtime::endpoints`] over
//! HTTP/1.1 with their chains, proxying each to its backend; `redplug serve` is that plus
//! signals. Bodies stream unless a plugin declares it reads them ([`redplug::Bodies`]), and
//! then are bounded by [`BodyLimits`].
//!
//! ## How it is built
//!
//! | module | what it is |
//! |---|---|
//! | [`config`] | reading and checking the config file, every key with its JSON path |
//! | `net` | dialing one connection (TCP, TLS, setup, limits), the stream that batches writes |
//! | `pool` | a pool: its handle engine, shared lane, exclusive checkouts and maintenance |
//! | `cluster` | a Redis Cluster client: routing, node dialing, the slot map for selectors |
//! | `registry`, `names` | the plugin walk: resolving names once, building plugins |
//! | `runtime`, `endpoint`, `pipeline`, `layer`, `lifecycle`, `scopes` | what a host holds and runs: endpoints and their chains, bodies streamed or bounded, init and shutdown hooks |
//! | [`serve`] | the gateway: routes, backend calls, the body type with its stall bound |
//! | `retry`, `failure`, `telemetry` | what pools and clusters share: go-redis' retry policy, how failures are worded, spans and gauges |

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "cli")]
pub mod cli;
mod cluster;
pub mod config;
mod connections;
mod endpoint;
mod error;
mod failure;
mod health;
#[cfg(feature = "tower")]
mod layer;
mod lifecycle;
mod names;
mod net;
mod pipeline;
mod pool;
mod registry;
mod reload;
mod retry;
mod runtime;
mod scopes;
mod scripts;
#[cfg(feature = "serve")]
pub mod serve;
mod slot;
mod telemetry;

pub use endpoint::{Backend, Endpoint};
pub use error::{StartupError, UnknownPlugin, UnknownPool, UnresolvedNeed};
pub use health::{ConnectionHealth, Health, PING_TIMEOUT};
#[cfg(feature = "tower")]
pub use layer::{PluginLayer, PluginService};
pub use net::tls::TlsSetupError;
pub use pipeline::{BodyLimits, Pipeline};
pub use reload::{Changes, ReloadReport};
pub use runtime::{PluginRef, Runtime, RuntimeBuilder};
