//! The cluster's exclusive connections (`RedisCluster::checkout`): a pool of cluster
//! connections of their own, verified before reuse, with the exclusive reply deadlines.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleError};
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::dial::NodeConn;
use super::{Routed, route};
use crate::failure;
use crate::pool::exclusive::{pipeline_reply_limit, reply_limit, within};
use crate::pool::maintenance;
use crate::retry::io_error;

/// Opens and verifies the cluster connections behind `RedisCluster::checkout`.
pub(super) struct ExclusiveManager {
    pub(super) client: ClusterClient,
    pub(super) owner: Arc<str>,
    pub(super) connect_timeout: Duration,
    pub(super) verify_timeout: Duration,
    pub(super) max_idle_time: Option<Duration>,
    pub(super) max_life_time: Option<Duration>,
}

impl managed::Manager for ExclusiveManager {
    type Type = Routed;
    type Error = RedisError;

    async fn create(&self) -> RedisResult<Routed> {
        match tokio::time::timeout(
            self.connect_timeout,
            self.client.get_async_generic_connection::<NodeConn>(),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(io_error(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: opening an exclusive connection took longer than {:?}",
                    self.owner, self.connect_timeout
                ),
            )),
        }
    }

    async fn recycle(
        &self,
        conn: &mut Routed,
        metrics: &Metrics,
    ) -> managed::RecycleResult<RedisError> {
        if let Some(reason) = maintenance::expired(metrics, self.max_idle_time, self.max_life_time)
        {
            return Err(RecycleError::message(reason));
        }
        // UNWATCH goes to every master: it drops any WATCH the last user left behind and proves
        // that each node still answers.
        let unwatch = redis::cmd("UNWATCH");
        match tokio::time::timeout(self.verify_timeout, conn.req_packed_command(&unwatch)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(RecycleError::Backend(error)),
            Err(_) => Err(RecycleError::message("UNWATCH got no reply in time")),
        }
    }
}

/// A cluster connection checked out for one task; returned to the pool on drop unless a reply
/// did not come in time (see [`crate::blocking`]).
pub(super) struct ClusterCheckout {
    pub(super) object: Option<Object<ExclusiveManager>>,
    /// ``cluster `name` ``, for errors.
    pub(super) owner: Arc<str>,
    /// A reply was given up on: the connection may still deliver it, so it is not reused.
    pub(super) late: bool,
}

impl ClusterCheckout {
    fn object(&mut self) -> RedisResult<&mut Object<ExclusiveManager>> {
        self.object.as_mut().ok_or_else(failure::already_returned)
    }

    /// Remembers a reply given up on: the connection may still deliver it later.
    fn note<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if result.as_ref().is_err_and(RedisError::is_timeout) {
            self.late = true;
        }
        result
    }
}

impl Drop for ClusterCheckout {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && self.late
        {
            drop(Object::take(object));
        }
    }
}

impl ConnectionLike for ClusterCheckout {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let owner = self.owner.clone();
            let reply = route(self.object()?, cmd);
            let result = within(reply_limit(cmd), || owner.to_string(), reply).await;
            self.note(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let owner = self.owner.clone();
            let replies = self.object()?.req_packed_commands(pipeline, offset, count);
            let limit = pipeline_reply_limit(pipeline);
            let result = within(limit, || owner.to_string(), replies).await;
            self.note(result)
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
