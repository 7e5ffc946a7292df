//! Real Redis for redplug's tests, benchmarks and examples.
//!
//! Every [`RedisServer`] is a `redis-server` process of its own: a free loopback port, a private
//! temp dir, no persistence unless asked, killed (and reaped) on drop. Tests never share a
//! server, so they can run in parallel and change whatever they like. A [`RedisCluster`] is
//! several such servers joined with `redis-cli --cluster create`.
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
//! `redis-server` (and `redis-cli`, for clusters and TLS) must be on `PATH`. When they are not,
//! tests fail with install instructions rather than being skipped.
//!
//! When a test panics, each of its servers prints the end of its log to stderr as it is
//! dropped, so the failure output shows what Redis saw.
//!
//! Everything here blocks the calling thread briefly (start-up, stop, restart take
//! milliseconds). The exceptions that can take seconds have async forms:
//! [`Restart::wait`], [`RedisCluster::wait_for_ok_async`], [`wait_for_async`].
//!
//! TLS clients: [`RedisServer::client`] builds a redis-rs TLS client, and redis-rs' rustls
//! picks the crypto provider from rustls' features (`ring` here), installing it as the process
//! default. The harness itself probes TLS servers with `redis-cli`, so starting a TLS server
//! leaves rustls' process state alone.

mod binary;
mod cluster;
mod port;
mod server;
mod tls;
mod wait;

pub use binary::missing_program_message;
pub use cluster::{RedisCluster, RedisClusterBuilder, SLOTS};
pub use server::{RedisServer, RedisServerBuilder, Restart};
pub use tls::{ClientAuth, TlsFiles};
pub use wait::{wait_for, wait_for_async};
