//! What the handles plugins hold point at: a [`Slot`], holding the pool or cluster configured
//! under a name right now. A reload that changes a pool's options builds a new engine and swaps
//! it into the slot: handles keep working, commands already running finish on the old engine,
//! and new ones use the new one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use redplug::host::{ClusterBackend, PoolBackend};
use redplug::{PoolStatus, PooledConnection, RedisCluster, RedisPool};

use crate::cluster::ClusterEngine;
use crate::pool::PoolEngine;
use crate::telemetry::boxed_in_place;

/// The engine behind one configured name.
pub(crate) struct Slot<E> {
    /// The configured name: a renamed pool is another slot.
    name: Arc<str>,
    current: ArcSwap<E>,
}

impl<E> Slot<E> {
    pub(crate) fn new(name: &str, engine: Arc<E>) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(name),
            current: ArcSwap::new(engine),
        })
    }

    /// The engine in the slot now.
    pub(crate) fn engine(&self) -> Arc<E> {
        self.current.load_full()
    }

    /// Puts `engine` in the slot and hands back the one it replaces.
    pub(crate) fn swap(&self, engine: Arc<E>) -> Arc<E> {
        self.current.swap(engine)
    }
}

impl Slot<PoolEngine> {
    /// The handle plugins receive.
    pub(crate) fn handle(self: &Arc<Self>) -> RedisPool {
        redplug::host::pool(self.clone())
    }
}

impl Slot<ClusterEngine> {
    /// The handle plugins receive.
    pub(crate) fn handle(self: &Arc<Self>) -> RedisCluster {
        redplug::host::cluster(self.clone())
    }
}

// Each call takes the engine out of the slot once and keeps it until the call is done, so a
// swap in the middle of a command (or its retries) cannot move it to another engine.

impl PoolBackend for Slot<PoolEngine> {
    fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> i64 {
        self.current.load().db()
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let engine = self.engine();
        // One box for the whole command, built in place (see `telemetry::boxed_in_place`).
        boxed_in_place(move || async move { engine.send_unboxed(cmd).await })
    }

    fn send_once<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let engine = self.engine();
        Box::pin(async move { engine.send_once(cmd).await })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let engine = self.engine();
        Box::pin(async move { engine.send_pipeline(pipeline, offset, count).await })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        let engine = self.engine();
        Box::pin(async move { PoolBackend::checkout(&*engine).await })
    }

    fn status(&self) -> PoolStatus {
        self.current.load().status()
    }
}

impl ClusterBackend for Slot<ClusterEngine> {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let engine = self.engine();
        Box::pin(async move { engine.send(cmd).await })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let engine = self.engine();
        Box::pin(async move { engine.send_pipeline(pipeline, offset, count).await })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        let engine = self.engine();
        Box::pin(async move { ClusterBackend::checkout(&*engine).await })
    }

    fn node_for_key<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, RedisResult<Option<RedisPool>>> {
        let engine = self.engine();
        Box::pin(async move { engine.node_for_key(key).await })
    }
}
