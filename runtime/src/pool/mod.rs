//! Connection pools for `connection_pools[]` entries, behind the [`RedisPool`] handle.
//!
//! Every connection is owned by one deadpool pool bounded by `pool_size` (lowered by
//! `max_active_conns`). Plain commands do not check a connection out per command: deadpool
//! pings on every checkout, which would halve throughput. Instead the pool keeps one of its
//! connections checked out as the *shared lane*, a multiplexed connection that pipelines the
//! commands of every concurrent task on one socket; under load, commands spill over to a few
//! more lanes (see [`lane`]). Exclusive checkouts ([`RedisPool::checkout`]) take the other
//! connections, each verified with `UNWATCH` + `PING` first.

pub(crate) mod exclusive;
mod lane;
pub(crate) mod maintenance;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use deadpool::managed::{self, Metrics, Object, RecycleError, Timeouts};
use futures_util::future::BoxFuture;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use redplug::host::{self, PoolBackend};
use redplug::{PoolStatus, PooledConnection};

use crate::config::PoolConfig;
use crate::failure::{self, LastError, Waited};
use crate::net::dial::{Connection, Connector};
use crate::net::wire::{Wire, within};
use crate::retry::{RetryPolicy, breaks_connection, io_error, is_read_only, is_retryable};
use crate::telemetry::{Server, Telemetry};
use exclusive::PoolCheckout;
pub(crate) use lane::LaneUse;
use lane::Lanes;

/// How long commands on the shared lane may wait without a reply from the server: go-redis'
/// default read timeout, renewed by every reply (see [`crate::net::coalesce`]). Blocking commands
/// belong on an exclusive connection, which has no such limit.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens, verifies and retires the pool's connections for deadpool.
pub(crate) struct Manager {
    connector: Connector,
    max_idle_time: Option<Duration>,
    max_life_time: Option<Duration>,
    verify_timeout: Duration,
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
        if let Some(reason) = maintenance::expired(metrics, self.max_idle_time, self.max_life_time)
        {
            return Err(RecycleError::message(reason));
        }
        if let Some(sentinels) = self.connector.sentinels()
            && sentinels
                .named()
                .is_some_and(|master| *master != *connection.address())
        {
            return Err(RecycleError::message(
                "the sentinels name another server as the master",
            ));
        }
        let mut conn = connection.conn.clone();
        // UNWATCH drops any WATCH a previous user left behind; PING proves the socket works.
        let mut verify = redis::pipe();
        verify.cmd("UNWATCH").ignore().cmd("PING").ignore();
        within(self.verify_timeout, verify.exec_async(&mut conn))
            .await
            .map_err(RecycleError::Backend)
    }
}

type Pool = managed::Pool<Manager>;

/// One pool: its deadpool, its shared lane and its retry policy. Implements the backend of
/// [`RedisPool`].
pub(crate) struct PoolEngine {
    name: Arc<str>,
    db: i64,
    pool: Pool,
    lanes: Lanes,
    retry: RetryPolicy,
    pool_timeout: Duration,
    telemetry: Telemetry,
    closed: AtomicBool,
    /// Set by [`PoolEngine::close`]; ends the socket of every connection, checked out or not.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The last command failure and when it happened, for health reports.
    last_error: LastError,
    /// The pool follows a master through Sentinel: `READONLY` means the master was demoted.
    follows_master: bool,
}

impl PoolEngine {
    /// Builds the pool for `config`; connections open lazily, except the `min_idle_conns`
    /// that maintenance opens.
    pub(crate) fn new(config: &PoolConfig, connector: Connector) -> Result<Arc<Self>, String> {
        let options = &config.options;
        let (shutdown, closing) = tokio::sync::watch::channel(false);
        let connector_sentinels = connector.sentinels().cloned();
        let follows_master = connector_sentinels.is_some();
        let manager = Manager {
            connector: connector
                .closing_on(closing)
                .reply_timeout(RESPONSE_TIMEOUT),
            max_idle_time: options.conn_max_idle_time,
            max_life_time: options.conn_max_life_time,
            verify_timeout: options.dial_timeout.min(RESPONSE_TIMEOUT),
        };
        let lanes = Lanes::for_pool_size(options.max_connections());
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
            // A pool behind Sentinel names the master it follows now.
            telemetry: Telemetry::new(
                name.clone(),
                &options.opentelemetry,
                Some(config.db),
                match connector_sentinels {
                    Some(sentinels) => Some(Server::Master(sentinels)),
                    None => config
                        .server
                        .address()
                        .map(|address| Server::Fixed(Arc::new(address.clone()))),
                },
            ),
            name,
            db: config.db,
            pool,
            lanes,
            retry: options.retry.into(),
            pool_timeout: options.pool_timeout,
            closed: AtomicBool::new(false),
            shutdown,
            last_error: LastError::default(),
            follows_master,
        }))
    }

    /// The last command failure and when it happened.
    pub(crate) fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.get()
    }

    /// Whether nothing uses this engine any more, once it was swapped out of its slot: no
    /// command running on it (each holds the engine) and no exclusive connection checked out
    /// of it. `owners` is how many references the caller itself keeps.
    pub(crate) fn is_idle(self: &Arc<Self>, owners: usize) -> bool {
        let status = self.pool.status();
        let exclusive = status
            .size
            .saturating_sub(status.available)
            .saturating_sub(self.lanes.open());
        Arc::strong_count(self) <= owners && exclusive == 0
    }

    /// The pool's name.
    pub(crate) fn name(&self) -> &str {
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
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lanes.clear();
        self.pool.close();
        self.shutdown.send_replace(true);
    }

    /// Whether [`PoolEngine::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The sentinels this pool follows its master through, if it does.
    pub(crate) fn sentinels(&self) -> Option<Arc<crate::net::sentinel::Sentinels>> {
        self.pool.manager().connector.sentinels().cloned()
    }

    /// [`PoolBackend::send`] without its own box, for a caller that boxes around it.
    pub(crate) async fn send_unboxed(&self, cmd: &Cmd) -> RedisResult<Value> {
        let attempts = self.with_retries(self.retry.max_retries, Command::retried(cmd));
        self.telemetry.observe(cmd, attempts).await
    }

    /// Turns true when the pool closes.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Makes connections opened from now on authenticate with new credentials; open
    /// connections keep their sessions (see [`Connector::set_credentials`]).
    pub(crate) fn set_credentials(&self, user_name: Option<&str>, password: Option<&str>) {
        self.pool
            .manager()
            .connector
            .set_credentials(user_name, password);
    }

    /// The sentinels named `master` as the master: drops the shared lane and the idle
    /// connections that reach another server, and exclusive connections in use are not taken
    /// back when they are returned (see [`Manager`]). Commands in flight on the old lane finish
    /// or fail there, and are retried on the new master by the usual rules.
    pub(crate) fn follow_master(&self, master: &crate::config::Address) {
        for lane in self.lanes.current() {
            if lane.link.address() != master {
                self.invalidate(&lane);
            }
        }
        let _dropped = self
            .pool
            .retain(|connection, _| connection.address() == master);
    }

    fn shut_down(&self) -> RedisError {
        failure::shut_down(&failure::pool(&self.name))
    }

    async fn checkout(&self) -> RedisResult<Object<Manager>> {
        let timeouts = Timeouts {
            wait: Some(self.pool_timeout),
            create: None,
            recycle: None,
        };
        let started = std::time::Instant::now();
        let checkout = self.pool.timeout_get(&timeouts).await;
        let timed_out = matches!(&checkout, Err(managed::PoolError::Timeout(_)));
        self.telemetry.record_wait(started.elapsed(), timed_out);
        checkout.map_err(|error| {
            let status = self.pool.status();
            let also = match self.lanes.open() {
                0 => String::new(),
                1 => " (one carries the shared command lane)".to_owned(),
                lanes => format!(" ({lanes} carry the shared command lanes)"),
            };
            let waited = Waited {
                what: "connection",
                also: &also,
                pool_timeout: self.pool_timeout,
                max_size: status.max_size,
                waiting: status.waiting,
            };
            failure::checkout(&failure::pool(&self.name), error, waited)
        })
    }

    /// Runs `attempt` on the lane with the pool's retry policy.
    async fn with_retries<A: Attempt>(&self, retries: u32, attempt: A) -> RedisResult<A::Output> {
        let mut retry = 0;
        loop {
            // A command holds the lane's connection until it is done: if another command
            // breaks and replaces it meanwhile, the socket stays open for the commands already
            // on it. Closing it under them would fail commands the server may have applied,
            // and their retries would apply them twice.
            let error = match self.lane().await {
                Ok(lane) => {
                    let backlog = lane.link.backlog();
                    let in_flight = backlog.track();
                    let result = attempt.send(&lane.link.conn).await;
                    drop(in_flight);
                    match result {
                        Ok(value) => return Ok(value),
                        Err(error) => {
                            if breaks_connection(&error)
                                || (self.follows_master && is_read_only(&error))
                            {
                                // A demoted master keeps its connections but refuses writes.
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
                return Err(self.shut_down());
            }
            let Some(wait) = self.retry.next_wait(retry, retries, is_retryable(&error)) else {
                let error = failure::annotate(&failure::pool(&self.name), error, true);
                self.last_error.set(&error);
                return Err(error);
            };
            retry += 1;
            self.telemetry.record_retry();
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
}

impl PoolBackend for PoolEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> i64 {
        self.db
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.telemetry.command(cmd, move || {
            self.with_retries(self.retry.max_retries, Command::retried(cmd))
        })
    }

    fn send_once<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.telemetry.command(cmd, move || {
            self.with_retries(
                0,
                Command {
                    cmd,
                    transient_errors: false,
                },
            )
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.telemetry.pipeline(pipeline, move || {
            self.with_retries(
                self.retry.max_retries,
                Commands {
                    pipeline,
                    offset,
                    count,
                    transient_errors: true,
                },
            )
        })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(self.shut_down());
            }
            let object = self.checkout().await?;
            Ok(host::connection(Box::new(PoolCheckout {
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
/// What one try sends on the lane. A trait rather than a closure so that a try borrows the
/// lane's connection instead of cloning it (a reference count every core writes).
pub(super) trait Attempt: Sync {
    type Output;
    fn send<'c>(
        &'c self,
        conn: &'c Wire,
    ) -> impl Future<Output = RedisResult<Self::Output>> + Send + 'c;
}

/// One command.
pub(super) struct Command<'a> {
    pub(super) cmd: &'a Cmd,
    /// Transient error replies (`LOADING`, `READONLY`, `max clients`) become errors, so that
    /// they are retried.
    pub(super) transient_errors: bool,
}

impl<'a> Command<'a> {
    fn retried(cmd: &'a Cmd) -> Self {
        Self {
            cmd,
            transient_errors: true,
        }
    }
}

impl Attempt for Command<'_> {
    type Output = Value;

    async fn send(&self, conn: &Wire) -> RedisResult<Value> {
        let reply = conn.send_packed_command(self.cmd).await;
        if self.transient_errors {
            reply.and_then(retry_reply)
        } else {
            reply
        }
    }
}

/// A pipeline's replies after `offset`, `count` of them.
pub(super) struct Commands<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) offset: usize,
    pub(super) count: usize,
    /// As in [`Command`], for the first transient error among the replies.
    pub(super) transient_errors: bool,
}

impl Attempt for Commands<'_> {
    type Output = Vec<Value>;

    async fn send(&self, conn: &Wire) -> RedisResult<Vec<Value>> {
        let replies = conn
            .send_packed_commands(self.pipeline, self.offset, self.count)
            .await;
        if self.transient_errors {
            replies.and_then(retry_replies)
        } else {
            replies
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Value {
        redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).expect("an error reply")
    }

    /// Every command's future is copied into a box; one that carried the dial path's state
    /// machine (kilobytes) would cost more CPU per command than the rest of the handle.
    /// Dialing is boxed separately, so the command's own future stays small.
    #[test]
    fn a_command_future_does_not_carry_the_dial_path() {
        let config = PoolConfig {
            name: "sizes".into(),
            server: crate::config::PoolServer::Address(crate::config::Address {
                host: "127.0.0.1".into(),
                port: 6379,
            }),
            db: 0,
            options: crate::config::ConnectionOptions::default(),
        };
        let connector = Connector::new(
            config.name.as_str().into(),
            crate::config::Address {
                host: "127.0.0.1".into(),
                port: 6379,
            },
            0,
            &config.options,
            None,
        );
        let engine = PoolEngine::new(&config, connector).expect("a lazy pool builds offline");
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let future = engine.with_retries(3, Command::retried(cmd));
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
