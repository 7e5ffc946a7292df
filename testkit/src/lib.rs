//! # redplug-testkit
//!
//! Test a redplug plugin in `cargo test`, against a real Redis, without a gateway:
//!
//! - [`RedisServer`]: a private `redis-server` process on a free loopback port, with its own
//!   temp dir, killed on drop; with a password, ACL users, TLS or persistence when asked.
//!   [`RedisCluster`]: several of them joined into a Redis Cluster. [`RedisSentinelSet`]: a
//!   master, its replicas and three sentinels watching them.
//! - [`PluginKit`] (feature `plugin`, on by default): one plugin built by the redplug runtime from
//!   a gateway config, exactly as a gateway builds it (fields injected, config read, scripts
//!   loaded, `init` run), at the service level or at an endpoint or backend with that place's
//!   settings; requests and responses run through its hooks.
//! - Faults a plugin must live through: [`RedisServer::restart`] (data and scripts gone),
//!   [`RedisServer::stop`], [`RedisServer::kill_clients`] (every connection cut),
//!   [`RedisServer::freeze`] / [`thaw`](RedisServer::thaw) (paused: sockets open, nothing
//!   answered), [`RedisServer::flush_scripts`] (`SCRIPT FLUSH`, as after a failover), and
//!   [`RedisCluster::kill_master_owning`] and [`RedisSentinelSet::kill_master`] (failovers).
//!
//! ```no_run
//! use redplug::prelude::*;
//! use redplug::redis::AsyncCommands;
//! use redplug_testkit::{PluginKit, RedisServer};
//! use serde_json::json;
//!
//! // The plugin under test, normally from the crate being tested.
//! #[derive(Plugin)]
//! #[plugin(name = "visits")]
//! struct Visits {
//!     #[redis_pool("counters")]
//!     redis: RedisPool,
//!     #[plugin(config)]
//!     config: VisitsConfig,
//! }
//!
//! #[derive(serde::Deserialize, Default)]
//! struct VisitsConfig {
//!     prefix: String,
//! }
//!
//! impl Middleware for Visits {
//!     async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
//!         let key = format!("{}:{}", self.config.prefix, request.uri().path());
//!         let visits: i64 = self.redis.clone().incr(key, 1).await?;
//!         request.headers_mut().insert("x-visits", visits.into());
//!         Ok(Flow::Continue)
//!     }
//! }
//!
//! #[tokio::test]
//! async fn counts_visits_per_path() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = RedisServer::start();
//!     let kit = PluginKit::<Visits>::builder()
//!         .pool("counters", &server)
//!         .config(json!({ "prefix": "visits" }))
//!         .start()
//!         .await?;
//!
//!     let request = || http::Request::get("/docs").body(bytes::Bytes::new());
//!     kit.request(request()?).await;
//!     let second = kit.request(request()?).await;
//!     let forwarded = second.forwarded.expect("the plugin lets requests through");
//!     assert_eq!(forwarded.headers()["x-visits"], "2");
//!
//!     // What landed in Redis, read with a connection of the test's own.
//!     let stored: i64 = server.async_conn().await.get("visits:/docs").await?;
//!     assert_eq!(stored, 2);
//!
//!     // The server restarts empty; the plugin's pool reconnects by itself.
//!     server.restart();
//!     assert_eq!(kit.request(request()?).await.forwarded.unwrap().headers()["x-visits"], "1");
//!     kit.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! A plugin crate adds it as a dev-dependency next to `tokio` (tests are async), and usually
//! `serde_json`, `http` and `bytes` to write configs and requests:
//!
//! ```toml
//! [dev-dependencies]
//! redplug-testkit = "0.1"
//! tokio = { version = "1", features = ["macros", "rt"] }
//! ```
//!
//! `redis-server` (and `redis-cli`, for clusters and TLS) must be on `PATH`. When they are not,
//! tests fail with install instructions rather than being skipped: a skipped test looks like a
//! passing one. A server that runs elsewhere (a shared one in CI) can be given by address with
//! [`PluginKitBuilder::pool_at`].
//!
//! Every server and cluster belongs to the test that started it, so tests run in parallel and
//! may change whatever they like. When a test panics, each of its servers prints the end of its
//! log to stderr as it is dropped, so the failure shows what Redis saw.
//!
//! Starting, stopping and restarting servers block the calling thread briefly (milliseconds).
//! The waits that can take seconds have async forms: [`Restart::wait`],
//! [`RedisCluster::wait_for_ok_async`], [`wait_for_async`].
//!
//! ## The harness on its own
//!
//! ```no_run
//! use std::time::Duration;
//! use redplug_testkit::{ClientAuth, RedisCluster, RedisServer};
//!
//! # async fn demo() {
//! // A plain server; `url()` and `addr()` go into the config under test.
//! let server = RedisServer::start();
//! let mut con = server.async_conn().await;
//! let _: () = redis::AsyncCommands::set(&mut con, "k", "v").await.unwrap();
//!
//! // Faults: the server is gone for 300 ms while the test keeps running.
//! let back = server.restart_after(Duration::from_millis(300));
//! back.wait().await;
//!
//! // Password, ACL user, TLS with client certificates, data that survives restarts.
//! let secure = RedisServer::builder()
//!     .password("s3cret")
//!     .acl_user("app", "app-pass")
//!     .tls(ClientAuth::Required)
//!     .persistence(true)
//!     .start();
//! let ca = &secure.tls().unwrap().ca_cert;
//!
//! // Three masters with a replica each; kill one and wait for its replica to take over.
//! let cluster = RedisCluster::start(3, 1);
//! cluster.kill_master_owning("user:1");
//! cluster.wait_for_ok_async().await;
//! # }
//! ```
//!
//! TLS clients (feature `tls`, on by default): [`RedisServer::client`] builds a redis-rs TLS
//! client, and redis-rs' rustls picks the crypto provider from rustls' features (`ring` here),
//! installing it as the process default. The harness itself probes TLS servers with
//! `redis-cli`, so starting a TLS server leaves rustls' process state alone.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod admin;
mod binary;
mod cluster;
#[cfg(feature = "plugin")]
mod plugin;
mod port;
mod sentinel;
mod server;
mod tls;
mod wait;

pub use binary::missing_program_message;
pub use cluster::{RedisCluster, RedisClusterBuilder, SLOTS};
#[cfg(feature = "plugin")]
pub use plugin::{Exchange, KIT_ENDPOINT, Place, PluginKit, PluginKitBuilder};
pub use sentinel::{RedisSentinelBuilder, RedisSentinelSet};
pub use server::{RedisServer, RedisServerBuilder, Restart};
pub use tls::{ClientAuth, TlsFiles};
pub use wait::{wait_for, wait_for_async};
