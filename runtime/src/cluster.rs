//! Redis Cluster clients for `clusters[]` entries, behind the [`RedisCluster`] handle.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use redplug::{ClusterBackend, NeedKind, PooledConnection, RedisCluster, RedisPool};

use crate::config::ClusterConfig;
use crate::error::StartupError;
use crate::pool::RESPONSE_TIMEOUT;
use crate::retry::io_error;

/// One cluster: a redis-rs cluster client built from the config, and its shared connection.
pub struct ClusterEngine {
    name: Arc<str>,
    client: ClusterClient,
    shared: tokio::sync::OnceCell<ClusterConnection>,
    closed: AtomicBool,
}

impl ClusterEngine {
    /// Builds the client for `config`. Connections open on first use.
    pub async fn new(config: &ClusterConfig) -> Result<Arc<Self>, StartupError> {
        let options = &config.options;
        let setup = |message: String| StartupError::Setup {
            kind: NeedKind::Cluster,
            name: config.name.clone(),
            message,
        };
        let seeds: Vec<String> = config
            .addresses
            .iter()
            .map(|address| format!("redis://{address}"))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(options.dial_timeout)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(options.retry.max_retries)
            .min_retry_wait(options.retry.min_backoff.as_millis() as u64)
            .max_retry_wait(options.retry.max_backoff.as_millis() as u64);
        if let Some(user) = &options.user_name {
            builder = builder.username(user.expose());
        }
        if let Some(password) = &options.password {
            builder = builder.password(password.expose());
        }
        let client = builder.build().map_err(|error| setup(error.to_string()))?;
        Ok(Arc::new(Self {
            name: Arc::from(config.name.as_str()),
            client,
            shared: tokio::sync::OnceCell::new(),
            closed: AtomicBool::new(false),
        }))
    }

    /// The handle plugins receive.
    pub fn handle(self: &Arc<Self>) -> RedisCluster {
        RedisCluster::from_backend(self.clone())
    }

    /// Refuses further commands.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    async fn connection(&self) -> RedisResult<ClusterConnection> {
        if self.closed.load(Ordering::Acquire) {
            return Err(io_error(
                io::ErrorKind::NotConnected,
                format!("cluster `{}` is shut down: the runtime stopped", self.name),
            ));
        }
        self.shared
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ClusterBackend for ClusterEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            redis::aio::ConnectionLike::req_packed_command(&mut conn, cmd).await
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            redis::aio::ConnectionLike::req_packed_commands(&mut conn, pipeline, offset, count)
                .await
        })
    }

    fn get(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        Box::pin(async move {
            let conn = self.client.get_async_connection().await?;
            Ok(PooledConnection::new(Box::new(conn)))
        })
    }

    fn node_for_key<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, RedisResult<Option<RedisPool>>> {
        let _ = key;
        Box::pin(async move {
            Err(io_error(
                io::ErrorKind::Unsupported,
                format!(
                    "cluster `{}`: node_for_key is not implemented yet",
                    self.name
                ),
            ))
        })
    }
}
