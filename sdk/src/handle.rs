//! The handles plugins receive: [`RedisPool`], [`RedisCluster`] and the exclusive
//! [`PooledConnection`].
//!
//! A handle is a thin, cheaply cloned pointer to a connection set that the runtime built from
//! the gateway's config. The runtime owns the connections; the handle only borrows them per
//! command. The backend traits at the bottom of this module are what the runtime implements;
//! plugin code never touches them.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A named Redis connection pool from `extra_config.redis.connection_pools[]`.
///
/// Plain commands run straight on the handle through [`redis::AsyncCommands`], sharing the
/// pool's multiplexed connection and its retry policy, with no checkout per command:
///
/// ```no_run
/// # async fn demo(redis: redplug::RedisPool) -> redis::RedisResult<()> {
/// use redplug::redis::AsyncCommands;
/// let hits: i64 = redis.clone().incr("hits", 1).await?;
/// # Ok(()) }
/// ```
///
/// `GET` is no exception: `redis.clone().get::<_, Option<String>>("key")` runs Redis' `GET`.
/// Use [`RedisPool::checkout`] for `MULTI`/`WATCH` transactions and blocking commands such as
/// `BLPOP`, which need a connection of their own.
#[derive(Clone)]
pub struct RedisPool {
    backend: Arc<dyn PoolBackend>,
}

impl RedisPool {
    /// Wraps a backend built by the host (see [`crate::host::pool`]).
    pub(crate) fn from_backend(backend: Arc<dyn PoolBackend>) -> Self {
        Self { backend }
    }

    /// The pool's name as configured.
    pub fn name(&self) -> &str {
        self.backend.name()
    }

    /// Checks out a connection for exclusive use, waiting at most the pool's `pool_timeout`.
    ///
    /// The connection goes back to the pool when dropped. Commands on it are not retried: a
    /// transaction must see its own failures.
    pub async fn checkout(&self) -> RedisResult<PooledConnection> {
        self.backend.checkout().await
    }

    /// A snapshot of the pool's connection counts.
    pub fn status(&self) -> PoolStatus {
        self.backend.status()
    }

    /// Runs one command without the pool's retries, for commands that must not be applied
    /// twice (a retried `INCR` whose reply was lost would count twice).
    pub async fn query_once<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        // A server's error reply is an error here, as with `Cmd::query_async`.
        let value = self.backend.send_once(cmd).await?.extract_error()?;
        redis::from_redis_value(value).map_err(Into::into)
    }

    /// True when both handles point at the same pool.
    pub fn same_pool(&self, other: &RedisPool) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
    }
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("name", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for RedisPool {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.backend.send(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.backend.send_pipeline(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.backend.db()
    }
}

/// A named Redis Cluster client from `extra_config.redis.clusters[]`.
///
/// Commands are routed by hash slot and follow `MOVED`/`ASK` redirects up to the cluster's
/// `max_redirects`. Like [`RedisPool`], plain commands run straight on the handle.
#[derive(Clone)]
pub struct RedisCluster {
    backend: Arc<dyn ClusterBackend>,
}

impl RedisCluster {
    /// Wraps a backend built by the host (see [`crate::host::cluster`]).
    pub(crate) fn from_backend(backend: Arc<dyn ClusterBackend>) -> Self {
        Self { backend }
    }

    /// The cluster's name as configured.
    pub fn name(&self) -> &str {
        self.backend.name()
    }

    /// A connection of its own to the cluster, for commands that block or must not share a
    /// socket with other tasks.
    pub async fn checkout(&self) -> RedisResult<ClusterConnection> {
        self.backend.checkout().await
    }

    /// A handle to the master that currently owns `key`'s hash slot (`{hashtag}` rules apply),
    /// as KrakenD's cluster selector returns. `None` when no node owns the slot.
    pub async fn node_for_key(&self, key: &[u8]) -> RedisResult<Option<RedisPool>> {
        self.backend.node_for_key(key).await
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("name", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for RedisCluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.backend.send(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.backend.send_pipeline(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A connection checked out of a [`RedisPool`] for exclusive use; returned on drop.
pub struct PooledConnection {
    inner: Box<dyn ConnectionLike + Send + Sync>,
}

impl PooledConnection {
    /// Wraps a checked-out connection (see [`crate::host::connection`]).
    pub(crate) fn new(inner: Box<dyn ConnectionLike + Send + Sync>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection").finish_non_exhaustive()
    }
}

impl ConnectionLike for PooledConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// A connection of its own to a Redis Cluster, from [`RedisCluster::checkout`].
pub type ClusterConnection = PooledConnection;

/// Connection counts of one pool at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// The pool's configured name.
    pub name: String,
    /// The most connections the pool will open at once.
    pub max_size: usize,
    /// Connections currently open, idle or in use.
    pub size: usize,
    /// Open connections waiting in the pool for a checkout.
    pub idle: usize,
    /// Open connections held by the shared command lane or by exclusive checkouts.
    pub in_use: usize,
    /// Tasks waiting for an exclusive checkout.
    pub waiting: usize,
}

/// What a host implements behind a [`RedisPool`] (see [`crate::host`]).
pub trait PoolBackend: Send + Sync + 'static {
    /// The pool's configured name.
    fn name(&self) -> &str;
    /// The database the pool's connections select.
    fn db(&self) -> i64;
    /// One command with the pool's retry policy.
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value>;
    /// One command, never retried.
    fn send_once<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value>;
    /// The commands of `pipeline`, returning `count` replies after skipping `offset`, as
    /// [`ConnectionLike::req_packed_commands`] does.
    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>>;
    /// A connection for one caller's exclusive use.
    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>>;
    /// The pool's connection counts now.
    fn status(&self) -> PoolStatus;
}

/// What a host implements behind a [`RedisCluster`] (see [`crate::host`]).
pub trait ClusterBackend: Send + Sync + 'static {
    /// The cluster's configured name.
    fn name(&self) -> &str;
    /// One command, routed by hash slot, with the cluster's retry policy.
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value>;
    /// The commands of `pipeline`, as [`ConnectionLike::req_packed_commands`] does.
    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>>;
    /// A cluster connection for one caller's exclusive use.
    fn checkout(&self) -> BoxFuture<'_, RedisResult<ClusterConnection>>;
    /// A pool handle to the master serving `key`'s slot, if any does.
    fn node_for_key<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, RedisResult<Option<RedisPool>>>;
}
