//! Redis Cluster clients for `clusters[]` entries, behind the [`RedisCluster`] handle.
//!
//! A cluster is three things, all built from the same options:
//!
//! - the **shared connection**: one redis-rs cluster connection, opened at startup, that every
//!   plain command on the handle goes through. It keeps one multiplexed socket per node, routes
//!   each command by hash slot, follows `MOVED`/`ASK`, and refreshes its slot map when a node
//!   fails or redirects;
//! - **exclusive connections** for [`RedisCluster::checkout`]: a pool (bounded by `pool_size`, waited
//!   for up to `pool_timeout`) of cluster connections of their own, without a reply timeout, for
//!   blocking commands;
//! - **node handles** for `cluster_node_for_key`: one [`RedisPool`] per master (see
//!   [`topology`]).
//!
//! How each option is applied:
//!
//! | option | where |
//! |---|---|
//! | `addresses` | seed nodes; the rest of the cluster is discovered with `CLUSTER SLOTS` |
//! | `user_name`, `password`, `client_name`, `tls`, `dial_timeout` | every node connection is dialed by redplug's own [`Connector`](crate::connect::Connector) (see the `dial` module): ACL `AUTH`, `CLIENT SETNAME`, our rustls settings (every `tls` key, including versions and `disable_system_ca_pool`), all within `dial_timeout` |
//! | `max_redirects` | redis-rs' retry budget (see below); -1 gives 0: a `MOVED`/`ASK` reaches the caller |
//! | `max_retries`, `min_retry_backoff`, `max_retry_backoff` | redplug's retry loop around each command, go-redis' policy and backoff |
//! | `pool_size`, `max_active_conns`, `pool_timeout`, `conn_max_idle_time`, `conn_max_life_time` | the exclusive-connection pool and every node handle's pool |
//! | `min_idle_conns`, `max_idle_conns` | node handles' pools (kept by [`maintenance`](crate::maintenance)) |
//! | `opentelemetry` | a `redis.command` / `redis.pipeline` span per command on the handle and on node handles; node pools' connection gauges |
//!
//! Redirects and retries: go-redis' cluster client spends `max_redirects` on both redirects and
//! retries of a failed node (its loop runs `max_redirects + 1` times), and each node client
//! retries `max_retries` times on its own. redis-rs has a single budget for redirects and its own
//! retries, so it gets `max_redirects`, with go-redis' backoff window (`min_retry_backoff`
//! doubling up to `max_retry_backoff`); redplug then retries the failures go-redis retries up to
//! `max_retries` times around it. The worst case is the same as go-redis':
//! `(max_redirects + 1) × (max_retries + 1)` attempts.
//!
//! Multi-key commands: redis-rs would split `MGET`, `MSET`, `DEL`, `EXISTS`, `UNLINK`, `TOUCH`,
//! `WATCH` and `JSON.MGET`/`JSON.MSET` across slots and fan them out to several masters. redplug
//! sends them whole to the slot of their first key, as go-redis does, so `MSET` stays atomic and
//! keys in different slots get the server's `CROSSSLOT` error: use `{hashtag}`s to keep related
//! keys together. Other multi-key commands (`SUNIONSTORE`, `RENAME`, ...) already go whole.
//!
//! Startup: the shared connection is opened before the runtime starts, so a cluster none of
//! whose seeds answers stops the gateway with an error naming every address and why it failed,
//! after about `dial_timeout` (an outer limit of twice `dial_timeout` plus the reply timeout
//! guards the whole handshake).
//!
//! Known limits: the shared connection's one socket per node lives as long as the runtime
//! (redis-rs repairs it when it breaks), so the idle and lifetime limits do not apply to it; the
//! exclusive pool is not pre-warmed by `min_idle_conns`; and since exclusive connections have no
//! reply timeout (a `BLPOP` may wait for minutes), a node that stops answering without closing
//! its socket stalls them, as it would stall a pool's exclusive connection.

mod dial;
mod direct;
mod exclusive;
pub(crate) mod topology;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use deadpool::managed::{self, Timeouts};
use futures_util::future::BoxFuture;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline};
use redis::{RedisError, RedisFuture, RedisResult, Value};
use redplug::host::{self, ClusterBackend};
use redplug::{NeedKind, PooledConnection, RedisPool};

use crate::config::{Address, ClusterConfig, ConnectionOptions};
use crate::error::StartupError;
use crate::failure::{self, LastError, Waited};
use crate::net::tls;
use crate::pool::RESPONSE_TIMEOUT;
use crate::retry::{RetryPolicy, io_error, is_retryable};
use crate::telemetry::{Redirects, Telemetry};
use dial::{Dial, NodeConn, RegisteredDial};
use exclusive::{ClusterCheckout, ExclusiveManager};
use topology::{Reply, Topology, changes_topology};

/// A redis-rs cluster connection over our node connections: one socket per node, commands
/// routed by hash slot.
type Routed = ClusterConnection<NodeConn>;

/// One cluster: its shared connection, its exclusive-connection pool and its node handles.
/// Implements the backend of [`RedisCluster`].
pub(crate) struct ClusterEngine {
    name: Arc<str>,
    /// `None` once closed.
    shared: ArcSwapOption<Routed>,
    exclusive: managed::Pool<ExclusiveManager>,
    pool_timeout: Duration,
    topology: Topology,
    /// redis-rs' redirect and retry budget, which the direct path spends the same way.
    budget: direct::Budget,
    retry: RetryPolicy,
    /// The most one command may take through redis-rs, redirects and its retries included.
    attempt_timeout: Duration,
    telemetry: Telemetry,
    closed: AtomicBool,
    /// Keeps the dials reachable for redis-rs; dropped on close.
    registrations: Mutex<Vec<RegisteredDial>>,
    /// The last command failure and when it happened, for health reports.
    last_error: LastError,
}

impl ClusterEngine {
    /// Builds the cluster for `config` and opens its shared connection: reaches a seed node,
    /// reads the slot map and connects to every node.
    pub(crate) async fn new(config: &ClusterConfig) -> Result<Arc<Self>, StartupError> {
        let options = &config.options;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let owner: Arc<str> = Arc::from(failure::cluster(&name));
        let tls = tls::connector(options.tls.as_ref()).map_err(|source| StartupError::Tls {
            kind: NeedKind::Cluster,
            name: config.name.clone(),
            source,
        })?;
        let setup = |message: String| StartupError::Setup {
            kind: NeedKind::Cluster,
            name: config.name.clone(),
            message,
        };

        let redirects = Redirects::new(name.clone(), &options.opentelemetry);
        let shared_dial = RegisteredDial::new(Dial::new(
            owner.clone(),
            options,
            tls.clone(),
            Some(RESPONSE_TIMEOUT),
            redirects.clone(),
        ));
        let exclusive_dial =
            RegisteredDial::new(Dial::new(owner.clone(), options, tls, None, redirects));
        let redirects = config.max_redirects.unwrap_or(0);
        let attempt_timeout = attempt_timeout(options, redirects);
        let shared_client =
            client(config, &shared_dial, redirects).map_err(|e| setup(e.to_string()))?;
        let exclusive_client =
            client(config, &exclusive_dial, redirects).map_err(|e| setup(e.to_string()))?;

        let connect_timeout = connect_timeout(options);
        let shared = match tokio::time::timeout(
            connect_timeout,
            shared_client.get_async_generic_connection::<NodeConn>(),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                return Err(StartupError::Connect {
                    kind: NeedKind::Cluster,
                    name: config.name.clone(),
                    source: startup_failure(
                        config,
                        shared_dial.dial(),
                        Some(error),
                        connect_timeout,
                    ),
                });
            }
            Err(_) => {
                return Err(StartupError::Connect {
                    kind: NeedKind::Cluster,
                    name: config.name.clone(),
                    source: startup_failure(config, shared_dial.dial(), None, connect_timeout),
                });
            }
        };

        let exclusive = managed::Pool::builder(ExclusiveManager {
            client: exclusive_client,
            owner: owner.clone(),
            connect_timeout,
            verify_timeout: options.dial_timeout.min(RESPONSE_TIMEOUT),
            max_idle_time: options.conn_max_idle_time,
            max_life_time: options.conn_max_life_time,
        })
        .max_size(options.max_connections())
        .wait_timeout(Some(options.pool_timeout))
        .create_timeout(None)
        .recycle_timeout(None)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|error| setup(error.to_string()))?;

        let topology = Topology::new(
            name.clone(),
            config.addresses.clone(),
            options,
            shared_dial.dial().clone(),
        );
        tracing::debug!(cluster = %name, seeds = config.addresses.len(), "cluster connected");
        Ok(Arc::new(Self {
            telemetry: Telemetry::new(name.clone(), &options.opentelemetry, None, None),
            name,
            shared: ArcSwapOption::from_pointee(shared),
            exclusive,
            pool_timeout: options.pool_timeout,
            topology,
            budget: direct::Budget::new(options, redirects),
            retry: options.retry.into(),
            attempt_timeout,
            closed: AtomicBool::new(false),
            registrations: Mutex::new(vec![shared_dial, exclusive_dial]),
            last_error: LastError::default(),
        }))
    }

    /// The last command failure and when it happened.
    pub(crate) fn last_error(&self) -> Option<(String, std::time::SystemTime)> {
        self.last_error.get()
    }

    /// Connection counts of the cluster's exclusive connections.
    pub(crate) fn exclusive_status(&self) -> managed::Status {
        self.exclusive.status()
    }

    /// Publishes the exclusive connections' counts as gauges, unless metrics are disabled.
    pub(crate) fn record_status(&self) {
        let status = self.exclusive.status();
        self.telemetry.record_status(&redplug::PoolStatus {
            name: self.name.to_string(),
            max_size: status.max_size,
            size: status.size,
            idle: status.available,
            in_use: status.size.saturating_sub(status.available),
            waiting: status.waiting,
        });
    }

    /// Whether nothing uses this engine any more, once it was swapped out of its slot: no
    /// command running on it and no exclusive connection checked out of it. `owners` is how
    /// many references the caller itself keeps.
    pub(crate) fn is_idle(self: &Arc<Self>, owners: usize) -> bool {
        let status = self.exclusive.status();
        Arc::strong_count(self) <= owners && status.size == status.available
    }

    /// Closes every connection: the shared one, exclusive ones as they come back, and every
    /// node handle's pool. Later commands fail with an error saying so.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shared.store(None);
        self.exclusive.close();
        self.topology.close();
        let registrations = match self.registrations.lock() {
            Ok(mut registrations) => std::mem::take(&mut *registrations),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        drop(registrations);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn shut_down(&self) -> RedisError {
        failure::shut_down(&failure::cluster(&self.name))
    }

    /// Runs `attempt` on the shared connection with go-redis' retry policy. Server errors come
    /// back from redis-rs as an `Err` once redis-rs spent its own budget on them, or as a
    /// [`Value::ServerError`] reply it does not act on; the retryable ones among the latter are
    /// retried too (for a pipeline, when its first error reply is, as go-redis decides).
    ///
    /// Each attempt first tries `direct` (see [`direct`]), which answers `None` when the
    /// attempt is to go through redis-rs.
    async fn with_retries<T, D, DFut, F, Fut>(
        &self,
        mut direct: D,
        mut attempt: F,
    ) -> RedisResult<T>
    where
        T: Reply,
        D: FnMut() -> DFut,
        DFut: Future<Output = Option<RedisResult<T>>>,
        F: FnMut(Routed) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut retry = 0;
        loop {
            let outcome = match direct().await {
                Some(outcome) => outcome,
                None => self.through_redis_rs(&mut attempt).await?,
            };
            let (error, reply) = match outcome {
                Ok(reply) => match reply.server_error() {
                    Some(error) => (error, Some(reply)),
                    None => return Ok(reply),
                },
                Err(error) => (error, None),
            };
            if changes_topology(&error) {
                self.topology.mark_stale();
            }
            if self.is_closed() {
                return Err(self.shut_down());
            }
            let next = self
                .retry
                .next_wait(retry, self.retry.max_retries, worth_retrying(&error));
            let Some(wait) = next else {
                return match reply {
                    // The caller turns the reply into its error, as it would without us.
                    Some(reply) => Ok(reply),
                    None => {
                        let network = matches!(
                            error.kind(),
                            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound
                        );
                        let error =
                            failure::annotate(&failure::cluster(&self.name), error, network);
                        self.last_error.set(&error);
                        Err(error)
                    }
                };
            };
            retry += 1;
            self.telemetry.record_retry();
            tracing::debug!(cluster = %self.name, retry, ?wait, %error, "retrying a failed command");
            tokio::time::sleep(wait).await;
        }
    }
}

impl ClusterEngine {
    /// One attempt through redis-rs' cluster connection, bounded by `attempt_timeout`; `Err`
    /// only when the cluster is shut down.
    async fn through_redis_rs<T, F, Fut>(&self, attempt: &mut F) -> RedisResult<RedisResult<T>>
    where
        F: FnMut(Routed) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(shared) = self.shared.load_full() else {
            return Err(self.shut_down());
        };
        Ok(
            match tokio::time::timeout(self.attempt_timeout, attempt((*shared).clone())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(io_error(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cluster `{}`: no reply within {:?}, redirects and reconnects included",
                        self.name, self.attempt_timeout
                    ),
                )),
            },
        )
    }
}

impl ClusterBackend for ClusterEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.telemetry.command(cmd, move || {
            self.with_retries(
                move || self.direct(cmd),
                move |mut conn| async move { route(&mut conn, cmd).await },
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
                || std::future::ready(None),
                move |mut conn| async move {
                    conn.req_packed_commands(pipeline, offset, count).await
                },
            )
        })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(self.shut_down());
            }
            let timeouts = Timeouts {
                wait: Some(self.pool_timeout),
                create: None,
                recycle: None,
            };
            let owner = failure::cluster(&self.name);
            let started = std::time::Instant::now();
            let checkout = self.exclusive.timeout_get(&timeouts).await;
            let timed_out = matches!(&checkout, Err(managed::PoolError::Timeout(_)));
            self.telemetry.record_wait(started.elapsed(), timed_out);
            let object = checkout.map_err(|error| {
                let status = self.exclusive.status();
                let waited = Waited {
                    what: "exclusive connection",
                    also: "",
                    pool_timeout: self.pool_timeout,
                    max_size: status.max_size,
                    waiting: status.waiting,
                };
                failure::checkout(&owner, error, waited)
            })?;
            Ok(host::connection(Box::new(ClusterCheckout {
                object: Some(object),
                owner: owner.into(),
                late: false,
            })))
        })
    }

    fn node_for_key<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, RedisResult<Option<RedisPool>>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(self.shut_down());
            }
            self.topology.node_for_key(key).await
        })
    }
}

/// Failures go-redis retries, plus redis-rs' "no connection to any node right now", which is
/// just as transient.
fn worth_retrying(error: &RedisError) -> bool {
    is_retryable(error) || error.kind() == ErrorKind::ClusterConnectionNotFound
}

/// Commands redis-rs would split per slot and fan out to several masters.
const SPLIT_BY_REDIS_RS: [&[u8]; 9] = [
    b"MGET",
    b"MSET",
    b"DEL",
    b"EXISTS",
    b"UNLINK",
    b"TOUCH",
    b"WATCH",
    b"JSON.MGET",
    b"JSON.MSET",
];

/// Sends `cmd` where go-redis would: multi-key commands whole to their first key's slot, all
/// others as redis-rs routes them.
pub(super) async fn route(conn: &mut Routed, cmd: &Cmd) -> RedisResult<Value> {
    match first_key_route(cmd) {
        Some(routing) => conn.route_command(cmd.clone(), routing).await,
        None => conn.req_packed_command(cmd).await,
    }
}

fn first_key_route(cmd: &Cmd) -> Option<RoutingInfo> {
    let mut args = cmd.args_iter();
    let Some(Arg::Simple(name)) = args.next() else {
        return None;
    };
    if !SPLIT_BY_REDIS_RS
        .iter()
        .any(|split| split.eq_ignore_ascii_case(name))
    {
        return None;
    }
    let Some(Arg::Simple(key)) = args.next() else {
        return None;
    };
    Some(RoutingInfo::SingleNode(
        SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)),
    ))
}

/// A redis-rs cluster client whose node connections go through `registration`'s dial.
fn client(
    config: &ClusterConfig,
    registration: &RegisteredDial,
    redirects: u32,
) -> RedisResult<ClusterClient> {
    let retry = &config.options.retry;
    let min_ms = u64::try_from(retry.min_backoff.as_millis()).unwrap_or(u64::MAX);
    let max_ms = u64::try_from(retry.max_backoff.as_millis()).unwrap_or(u64::MAX);
    let seeds: Vec<ConnectionInfo> = config
        .addresses
        .iter()
        .map(|address| {
            ConnectionAddr::Tcp(address.host.clone(), address.port).into_connection_info()
        })
        .collect::<RedisResult<_>>()?;
    let factor = min_ms.max(1);
    ClusterClientBuilder::new(seeds)
        // Not a database: the key under which our dial is registered (see `dial`).
        .database_id(registration.token())
        .retries(redis_rs_retries(redirects, factor))
        // redis-rs waits rand[min, min(max, factor * base^retry)) ms: with factor = min and
        // base 2 that is close to go-redis' min + rand[0, min * 2^retry), capped at max.
        .min_retry_wait(min_ms)
        .max_retry_wait(max_ms)
        .retry_wait_formula(factor, 2)
        .connection_timeout(config.options.dial_timeout)
        .response_timeout(RESPONSE_TIMEOUT)
        // redplug bounds each command itself, with a message naming the cluster.
        .overall_response_timeout(None)
        .build()
}

/// `max_redirects` as redis-rs can take it. redis-rs computes `factor * 2^retry` in u64 before
/// capping the wait, for one retry past its budget too, which overflows (and panics its task in
/// debug builds) past about 60 retries; dozens of redirects for one command are far past any
/// useful setting anyway.
fn redis_rs_retries(redirects: u32, factor: u64) -> u32 {
    let factor_bits = u64::BITS - factor.max(1).leading_zeros();
    redirects.min(u64::BITS - 2 - factor_bits)
}

/// The most one command may take through redis-rs: each of its `redirects + 1` tries may dial
/// a node and wait for a reply, with a backoff in between.
fn attempt_timeout(options: &ConnectionOptions, redirects: u32) -> Duration {
    let tries = redirects.saturating_add(1);
    (options.dial_timeout + RESPONSE_TIMEOUT)
        .saturating_mul(tries)
        .saturating_add(options.retry.max_backoff.saturating_mul(redirects))
}

/// The most opening a cluster connection may take: dialing the seeds, reading the slot map,
/// dialing the nodes it names.
fn connect_timeout(options: &ConnectionOptions) -> Duration {
    options.dial_timeout * 2 + RESPONSE_TIMEOUT
}

/// The startup error: every seed address, with why it could not be used.
fn startup_failure(
    config: &ClusterConfig,
    dial: &Dial,
    error: Option<RedisError>,
    limit: Duration,
) -> RedisError {
    let mut unreachable = 0;
    let seeds: String = config
        .addresses
        .iter()
        .map(|address: &Address| match dial.failure(address) {
            Some(why) => {
                unreachable += 1;
                if why.contains(&address.to_string()) {
                    format!("\n  - {why}")
                } else {
                    format!("\n  - {address}: {why}")
                }
            }
            None => format!("\n  - {address}: reached"),
        })
        .collect();
    let what = match error {
        Some(_) if unreachable == config.addresses.len() => "no seed node could be used".to_owned(),
        Some(error) => format!("the cluster's topology could not be read: {error}"),
        None => format!("the cluster's topology was not read within {limit:?}"),
    };
    io_error(
        io::ErrorKind::NotConnected,
        format!(
            "{what}; seed nodes tried (dial_timeout {:?}):{seeds}",
            config.options.dial_timeout
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(args: &[&str]) -> Option<RoutingInfo> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        first_key_route(&cmd)
    }

    fn to_slot_of(key: &str) -> Option<RoutingInfo> {
        Some(RoutingInfo::SingleNode(
            SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)),
        ))
    }

    #[test]
    fn multi_key_commands_go_to_their_first_key() {
        assert_eq!(routed(&["MSET", "a", "1", "b", "2"]), to_slot_of("a"));
        assert_eq!(routed(&["mget", "x", "y"]), to_slot_of("x"));
        assert_eq!(routed(&["Del", "k"]), to_slot_of("k"));
    }

    #[test]
    fn other_commands_keep_redis_rs_routing() {
        assert_eq!(routed(&["GET", "a"]), None);
        assert_eq!(routed(&["PING"]), None);
        assert_eq!(routed(&["MGET"]), None, "no key: redis-rs decides");
    }

    #[test]
    fn huge_redirect_counts_cannot_overflow_redis_rs_backoff() {
        for factor in [1, 8, 512, 3_600_000, u64::from(u32::MAX)] {
            let retries = redis_rs_retries(u32::MAX, factor);
            assert!(
                2u64.checked_pow(retries + 1)
                    .and_then(|base| base.checked_mul(factor))
                    .is_some(),
                "factor {factor}: {retries} retries"
            );
            assert!(retries >= 30, "factor {factor}: only {retries}");
        }
        assert_eq!(redis_rs_retries(3, 8), 3, "ordinary values pass through");
        let huge = attempt_timeout(&ConnectionOptions::default(), u32::MAX);
        assert!(huge > Duration::from_secs(3600 * 24));
    }

    #[test]
    fn timeouts_grow_with_redirects() {
        let options = ConnectionOptions::default();
        let none = attempt_timeout(&options, 0);
        assert_eq!(none, options.dial_timeout + RESPONSE_TIMEOUT);
        assert!(attempt_timeout(&options, 3) > none * 4);
        assert_eq!(
            connect_timeout(&options),
            options.dial_timeout * 2 + RESPONSE_TIMEOUT
        );
    }
}
