//! Connection pools for `connection_pools[]` entries, behind the [`RedisPool`] handle.
//!
//! Every connection is owned by one deadpool pool bounded by `pool_size` (lowered by
//! `max_active_conns`). Plain commands do not check a connection out per command: deadpool
//! pings on every checkout, which would halve throughput. Instead the pool keeps one of its
//! connections checked out as the *shared lane*, a multiplexed connection that pipelines the
//! commands of every concurrent task on one socket. Exclusive checkouts ([`RedisPool::checkout`])
//! take the other connections, each verified with `UNWATCH` + `PING` first.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, TimeoutType, Timeouts};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use redplug::{PoolBackend, PoolStatus, PooledConnection, RedisPool};

use crate::blocking;
use crate::config::PoolConfig;
use crate::connect::{Connection, Connector};
use crate::retry::{RetryPolicy, breaks_connection, io_error, is_retryable};
use crate::telemetry::Telemetry;

/// How long commands on the shared lane may wait without a reply from the server: go-redis'
/// default read timeout, renewed by every reply (see [`crate::coalesce`]). Blocking commands
/// belong on an exclusive connection, which has no such limit.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens, verifies and retires the pool's connections for deadpool.
pub struct Manager {
    connector: Connector,
    max_idle_time: Option<Duration>,
    max_life_time: Option<Duration>,
    verify_timeout: Duration,
}

impl Manager {
    fn expired(&self, metrics: &Metrics) -> Option<&'static str> {
        if self.max_life_time.is_some_and(|max| metrics.age() >= max) {
            return Some("reached conn_max_life_time");
        }
        if self
            .max_idle_time
            .is_some_and(|max| metrics.last_used() >= max)
        {
            return Some("idle longer than conn_max_idle_time");
        }
        None
    }
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    fn create(&self) -> impl Future<Output = RedisResult<Connection>> + Send {
        self.connector.connect()
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> managed::RecycleResult<RedisError> {
        if let Some(reason) = self.expired(metrics) {
            return Err(RecycleError::message(reason));
        }
        let mut conn = connection.conn.clone();
        conn.set_response_timeout(self.verify_timeout);
        // UNWATCH drops any WATCH a previous user left behind; PING proves the socket works.
        redis::pipe()
            .cmd("UNWATCH")
            .ignore()
            .cmd("PING")
            .ignore()
            .exec_async(&mut conn)
            .await
            .map_err(RecycleError::Backend)
    }
}

type Pool = managed::Pool<Manager>;

/// One pool: its deadpool, its shared lane and its retry policy. Implements the backend of
/// [`RedisPool`].
pub struct PoolEngine {
    name: Arc<str>,
    db: i64,
    pool: Pool,
    lane: Lane,
    retry: RetryPolicy,
    pool_timeout: Duration,
    telemetry: Telemetry,
    closed: AtomicBool,
    /// Set by [`PoolEngine::close`]; ends the socket of every connection, checked out or not.
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// The connection every plain command shares, replaced when it breaks or expires.
#[derive(Default)]
struct Lane {
    current: ArcSwapOption<LaneConn>,
    /// One task reconnects at a time; the others wait for its result instead of dialing too.
    reconnect: tokio::sync::Mutex<()>,
    /// Attempts to open the lane so far, and how the last one failed, if it did: a task that
    /// waited while another attempt ran takes that attempt's failure as its own answer rather
    /// than dialing again.
    attempts: std::sync::Mutex<(u64, Option<RedisError>)>,
    generation: AtomicU64,
}

impl Lane {
    fn attempts(&self) -> std::sync::MutexGuard<'_, (u64, Option<RedisError>)> {
        // A counter and a cloned error: a panic elsewhere cannot leave them half-written.
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// When maintenance last saw a pool's shared lane used, to retire it once idle; start with
/// `LaneUse::default()`.
#[derive(Debug)]
pub struct LaneUse {
    /// The lane's generation and the commands started on it.
    uses: (u64, u64),
    since: Instant,
}

impl Default for LaneUse {
    fn default() -> Self {
        Self {
            uses: (0, 0),
            since: Instant::now(),
        }
    }
}

/// The lane's connection: a checked-out pool object and a multiplexed clone of it.
struct LaneConn {
    generation: u64,
    conn: redis::aio::MultiplexedConnection,
    /// The pool connection behind `conn`, to see that the server closed it before a command
    /// is written to it.
    link: Connection,
    object: std::sync::Mutex<Option<Object<Manager>>>,
    broken: AtomicBool,
    created: Instant,
}

impl Drop for LaneConn {
    fn drop(&mut self) {
        let object = self.object.get_mut().ok().and_then(Option::take);
        if let Some(object) = object
            && *self.broken.get_mut()
        {
            // A broken connection must not go back to the pool for someone else to find.
            drop(Object::take(object));
        }
    }
}

impl PoolEngine {
    /// Builds the pool for `config`; connections open lazily, except the `min_idle_conns`
    /// that maintenance opens.
    pub fn new(config: &PoolConfig, connector: Connector) -> Result<Arc<Self>, String> {
        let options = &config.options;
        let (shutdown, closing) = tokio::sync::watch::channel(false);
        let manager = Manager {
            connector: connector
                .closing_on(closing)
                .reply_timeout(RESPONSE_TIMEOUT),
            max_idle_time: options.conn_max_idle_time,
            max_life_time: options.conn_max_life_time,
            verify_timeout: options.dial_timeout.min(RESPONSE_TIMEOUT),
        };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections())
            .wait_timeout(Some(options.pool_timeout))
            // The connector enforces dial_timeout itself, with a message naming the address.
            .create_timeout(None)
            .recycle_timeout(Some(options.dial_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| error.to_string())?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        Ok(Arc::new(Self {
            telemetry: Telemetry::new(name.clone(), &options.opentelemetry),
            name,
            db: config.db,
            pool,
            lane: Lane::default(),
            retry: options.retry.into(),
            pool_timeout: options.pool_timeout,
            closed: AtomicBool::new(false),
            shutdown,
        }))
    }

    /// The handle plugins receive.
    pub fn handle(self: &Arc<Self>) -> RedisPool {
        RedisPool::from_backend(self.clone())
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The deadpool behind this pool, for maintenance.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool's telemetry settings.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Closes every connection, including the shared lane's and those checked out; commands
    /// in flight and later fail with an error saying the pool is shut down.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lane.current.store(None);
        self.pool.close();
        self.shutdown.send_replace(true);
    }

    /// Whether [`PoolEngine::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the lane's connection if it is older than `max_life` or unused since the last
    /// call while `max_idle` passed, so the next command opens a fresh one.
    pub(crate) fn retire_lane(
        &self,
        max_life: Option<Duration>,
        last_use: &mut LaneUse,
        max_idle: Option<Duration>,
    ) {
        let Some(lane) = self.lane.current.load_full() else {
            return;
        };
        let uses = (lane.generation, lane.link.backlog().started());
        if uses != last_use.uses {
            *last_use = LaneUse {
                uses,
                since: Instant::now(),
            };
        }
        let too_old = max_life.is_some_and(|max| lane.created.elapsed() >= max);
        let too_idle = max_idle.is_some_and(|max| last_use.since.elapsed() >= max);
        if too_old || too_idle {
            tracing::debug!(pool = %self.name, too_old, too_idle, "retiring the shared connection");
            lane.broken.store(true, Ordering::Relaxed);
            self.lane
                .current
                .compare_and_swap(&Some(lane.clone()), None::<Arc<LaneConn>>);
        }
    }

    fn shut_down_error(&self) -> RedisError {
        shut_down_error(&self.name)
    }

    /// Replaces a missing lane, one task at a time. Tasks that wait meanwhile share the
    /// outcome: the new lane, or the failure, so that a server that does not answer costs each
    /// of them one attempt's time (`pool_timeout` to find a free connection plus
    /// `dial_timeout` to open one), not one attempt per task ahead of it.
    async fn open_lane(&self) -> RedisResult<Arc<LaneConn>> {
        let attempts_before = self.lane.attempts().0;
        let _turn = self.lane.reconnect.lock().await;
        if let Some(current) = self.live_lane() {
            return Ok(current);
        }
        if self.is_closed() {
            return Err(self.shut_down_error());
        }
        {
            let attempts = self.lane.attempts();
            if attempts.0 != attempts_before
                && let Some(failure) = &attempts.1
            {
                return Err(failure.clone());
            }
        }
        let checkout = self.checkout().await;
        {
            let mut attempts = self.lane.attempts();
            attempts.0 += 1;
            attempts.1 = checkout.as_ref().err().cloned();
        }
        let object = checkout?;
        let conn = object.conn.clone();
        let lane = Arc::new(LaneConn {
            generation: self.lane.generation.fetch_add(1, Ordering::Relaxed),
            conn,
            link: Connection::clone(&object),
            object: std::sync::Mutex::new(Some(object)),
            broken: AtomicBool::new(false),
            created: Instant::now(),
        });
        self.lane.current.store(Some(lane.clone()));
        Ok(lane)
    }

    /// The lane's current connection unless the server closed it while it sat idle (a restart,
    /// `CLIENT KILL`, an idle timeout): writing to it would fail a command that never reached
    /// the server, and `query_once` could not even retry it.
    fn live_lane(&self) -> Option<Arc<LaneConn>> {
        let current = self.lane.current.load_full()?;
        if current.link.is_closed() {
            self.invalidate(&current);
            return None;
        }
        Some(current)
    }

    /// Drops the lane's connection if it is still `failed`, so the next attempt gets another.
    fn invalidate(&self, failed: &Arc<LaneConn>) {
        failed.broken.store(true, Ordering::Relaxed);
        let current = self.lane.current.load();
        if current
            .as_ref()
            .is_some_and(|lane| lane.generation == failed.generation)
        {
            self.lane
                .current
                .compare_and_swap(&*current, None::<Arc<LaneConn>>);
        }
    }

    async fn checkout(&self) -> RedisResult<Object<Manager>> {
        let timeouts = Timeouts {
            wait: Some(self.pool_timeout),
            create: None,
            recycle: None,
        };
        self.pool
            .timeout_get(&timeouts)
            .await
            .map_err(|error| self.checkout_error(error))
    }

    fn checkout_error(&self, error: PoolError<RedisError>) -> RedisError {
        match error {
            PoolError::Backend(error)
            | PoolError::PostCreateHook(managed::HookError::Backend(error)) => error,
            PoolError::Timeout(TimeoutType::Wait) => {
                let status = self.pool.status();
                io_error(
                    io::ErrorKind::TimedOut,
                    format!(
                        "pool `{}`: no connection became free within pool_timeout ({:?}): all {} \
                         connections are in use (one carries the shared command lane) and {} \
                         other tasks are waiting; raise `pool_size` or hold exclusive \
                         connections for less time",
                        self.name,
                        self.pool_timeout,
                        status.max_size,
                        status.waiting.saturating_sub(1),
                    ),
                )
            }
            PoolError::Closed => self.shut_down_error(),
            other => io_error(
                io::ErrorKind::Other,
                format!("pool `{}`: checkout failed: {other}", self.name),
            ),
        }
    }

    /// Runs `attempt` on the lane with the pool's retry policy.
    async fn with_retries<T, F, Fut>(&self, retries: u32, mut attempt: F) -> RedisResult<T>
    where
        F: FnMut(redis::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut retry = 0;
        loop {
            // A command holds the lane's connection until it is done: if another command
            // breaks and replaces it meanwhile, the socket stays open for the commands already
            // on it. Closing it under them would fail commands the server may have applied,
            // and their retries would apply them twice.
            let lane = match self.live_lane() {
                Some(lane) => Ok(lane),
                // Boxed: a checkout may dial, and a dial's state machine is kilobytes that
                // every command's future would otherwise carry and copy, though almost none
                // dial.
                None => Box::pin(self.open_lane()).await,
            };
            let error = match lane {
                Ok(lane) => {
                    let backlog = lane.link.backlog();
                    let in_flight = backlog.track();
                    let result = attempt(lane.conn.clone()).await;
                    drop(in_flight);
                    match result {
                        Ok(value) => return Ok(value),
                        Err(error) => {
                            if breaks_connection(&error) {
                                self.invalidate(&lane);
                            }
                            if backlog.timed_out() {
                                // The socket ended at the reply deadline; all but one of its
                                // commands only see it gone. None may be retried: the server
                                // may have run it.
                                self.reply_timeout_error()
                            } else {
                                error
                            }
                        }
                    }
                }
                Err(error) => error,
            };
            if self.is_closed() {
                return Err(self.shut_down_error());
            }
            let Some(wait) = self.retry.next_wait(retry, retries, is_retryable(&error)) else {
                return Err(self.annotate(error));
            };
            retry += 1;
            tracing::debug!(pool = %self.name, retry, ?wait, %error, "retrying a failed command");
            tokio::time::sleep(wait).await;
        }
    }

    fn reply_timeout_error(&self) -> RedisError {
        io_error(
            io::ErrorKind::TimedOut,
            format!(
                "pool `{}`: the server sent no reply for {RESPONSE_TIMEOUT:?} (the shared \
                 connection's response timeout), so the connection was closed; the command may \
                 or may not have run. Run slow or blocking commands on an exclusive connection \
                 (`RedisPool::checkout`)",
                self.name
            ),
        )
    }

    /// Names the pool in network failures the caller would otherwise see bare.
    fn annotate(&self, error: RedisError) -> RedisError {
        let message = error.to_string();
        if !error.is_io_error() || message.contains(&*self.name) {
            return error;
        }
        let kind = if error.is_timeout() {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::ConnectionReset
        };
        io_error(kind, format!("pool `{}`: {message}", self.name))
    }
}

impl PoolBackend for PoolEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> i64 {
        self.db
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.telemetry.command(cmd, || {
            self.with_retries(self.retry.max_retries, move |mut conn| async move {
                conn.send_packed_command(cmd).await.and_then(retry_reply)
            })
        })
    }

    fn send_once<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.telemetry.command(cmd, || {
            self.with_retries(0, move |mut conn| async move {
                conn.send_packed_command(cmd).await
            })
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.telemetry.pipeline(pipeline, || {
            self.with_retries(self.retry.max_retries, move |mut conn| async move {
                conn.send_packed_commands(pipeline, offset, count)
                    .await
                    .and_then(retry_replies)
            })
        })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(self.shut_down_error());
            }
            let object = self.checkout().await?;
            Ok(PooledConnection::new(Box::new(Exclusive {
                object: Some(object),
                broken: false,
                pool: self.name.clone(),
                shutdown: self.shutdown.subscribe(),
            })))
        })
    }

    fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            name: self.name.to_string(),
            max_size: status.max_size,
            size: status.size,
            idle: status.available,
            in_use: status.size - status.available,
            waiting: status.waiting,
        }
    }
}

/// redis-rs hands a command's error reply back as `Ok(Value::ServerError)`, so the retry loop
/// would never see `LOADING`, `READONLY` and the other "not now" replies: turn those into
/// errors. Other error replies stay values, as the caller would get them without retries.
fn retry_reply(value: Value) -> RedisResult<Value> {
    match &value {
        Value::ServerError(reply) => {
            let error = RedisError::from(reply.clone());
            if is_retryable(&error) {
                Err(error)
            } else {
                Ok(value)
            }
        }
        _ => Ok(value),
    }
}

/// A pipeline is retried when its first error reply is one a single command would be
/// retried for, as go-redis decides for pipelines.
fn retry_replies(values: Vec<Value>) -> RedisResult<Vec<Value>> {
    match values.iter().find(|v| matches!(v, Value::ServerError(_))) {
        Some(first) => retry_reply(first.clone()).map(|_| values),
        None => Ok(values),
    }
}

/// A connection checked out for one task. Goes back to the pool on drop unless it broke.
struct Exclusive {
    object: Option<Object<Manager>>,
    broken: bool,
    pool: Arc<str>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Exclusive {
    fn conn(&mut self) -> RedisResult<&mut redis::aio::MultiplexedConnection> {
        if *self.shutdown.borrow() {
            return Err(shut_down_error(&self.pool));
        }
        self.object
            .as_mut()
            .map(|object| &mut object.conn)
            .ok_or_else(gone)
    }

    /// Marks the connection broken after `error`; says so when shutdown is what broke it.
    fn note(&mut self, error: RedisError) -> RedisError {
        if breaks_connection(&error) {
            self.broken = true;
        }
        if *self.shutdown.borrow() {
            return shut_down_error(&self.pool);
        }
        error
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && self.broken
        {
            drop(Object::take(object));
        }
    }
}

impl ConnectionLike for Exclusive {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let pool = self.pool.clone();
            let reply = self.conn()?.send_packed_command(cmd);
            let result = blocking::within(
                blocking::reply_limit(cmd),
                || format!("pool `{pool}`"),
                reply,
            )
            .await;
            result.map_err(|error| self.note(error))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let pool = self.pool.clone();
            let replies = self.conn()?.send_packed_commands(pipeline, offset, count);
            let result = blocking::within(
                blocking::pipeline_reply_limit(pipeline),
                || format!("pool `{pool}`"),
                replies,
            )
            .await;
            result.map_err(|error| self.note(error))
        })
    }

    fn get_db(&self) -> i64 {
        self.object
            .as_ref()
            .map_or(0, |object| object.conn.get_db())
    }
}

fn shut_down_error(pool: &str) -> RedisError {
    io_error(
        io::ErrorKind::NotConnected,
        format!("pool `{pool}` is shut down: the runtime stopped"),
    )
}

fn gone() -> RedisError {
    io_error(
        io::ErrorKind::NotConnected,
        "the connection was already returned".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Value {
        redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).expect("an error reply")
    }

    /// Every command's future is copied into a box; one that carried the dial path's state
    /// machine (10 KiB when this test was written) cost more CPU per command than the rest of
    /// the handle. Dialing is boxed separately, so the command's own future stays small.
    #[test]
    fn a_command_future_does_not_carry_the_dial_path() {
        let config = PoolConfig {
            name: "sizes".into(),
            address: crate::config::Address {
                host: "127.0.0.1".into(),
                port: 6379,
            },
            db: 0,
            options: crate::config::ConnectionOptions::default(),
        };
        let connector = Connector::new(
            config.name.as_str().into(),
            config.address.clone(),
            0,
            &config.options,
            None,
        );
        let engine = PoolEngine::new(&config, connector).expect("a lazy pool builds offline");
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let future = engine.with_retries(3, move |mut conn| async move {
            conn.send_packed_command(cmd).await
        });
        let size = std::mem::size_of_val(&future);
        assert!(
            size <= 2048,
            "a command's future is {size} bytes; keep slow paths (dialing, checkout) boxed"
        );
    }

    #[test]
    fn transient_error_replies_become_retryable_errors() {
        for transient in [
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "ERR max number of clients reached",
        ] {
            let error = retry_reply(reply(transient)).expect_err(transient);
            assert!(is_retryable(&error), "{transient}");
        }
    }

    #[test]
    fn final_error_replies_and_values_pass_through() {
        let wrongtype = reply("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(retry_reply(wrongtype.clone()).unwrap(), wrongtype);
        assert_eq!(retry_reply(Value::Int(3)).unwrap(), Value::Int(3));
    }

    #[test]
    fn a_pipeline_is_retried_for_its_first_error_only() {
        let loading = reply("LOADING Redis is loading the dataset in memory");
        let wrongtype = reply("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert!(retry_replies(vec![Value::Okay, loading.clone()]).is_err());
        let first_final = vec![wrongtype, loading];
        assert_eq!(retry_replies(first_final.clone()).unwrap(), first_final);
    }
}
