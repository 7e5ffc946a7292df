//! [`Health`]: whether each pool and cluster answers now, and whether the runtime is ready
//! (every connection some plugin requires answers).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use redplug::NeedKind;
use serde::Serialize;
use tokio::time::Instant;

use crate::connections::{ClusterEntry, PoolEntry};
use crate::runtime::State;

/// How long a health check waits for one `PING`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a health report is reused before the connections are asked again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// How many connections one health check pings at once.
const PINGS_AT_ONCE: usize = 16;

/// The health of every configured pool and cluster, from [`Runtime::health`](crate::Runtime::health).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Whether every pool and cluster that some plugin requires answered.
    pub ready: bool,
    /// Every pool, then every cluster, in file order.
    pub connections: Vec<ConnectionHealth>,
}

/// One pool's or cluster's health.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ConnectionHealth {
    /// `pool` or `cluster`.
    pub kind: &'static str,
    /// The configured name.
    pub name: String,
    /// Whether it answered a `PING` within [`PING_TIMEOUT`].
    pub reachable: bool,
    /// How long the `PING` took, when it answered.
    #[serde(rename = "round_trip_ms", serialize_with = "millis")]
    pub round_trip: Option<Duration>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Whether a plugin requires it (a field that is not an `Option`).
    pub required: bool,
    /// Open connections (a cluster's exclusive ones; its shared connection is one per node).
    pub open: usize,
    /// Of those, idle.
    pub idle: usize,
    /// The last command failure, if there was one.
    pub last_error: Option<String>,
    /// When it happened, in seconds since the Unix epoch.
    #[serde(rename = "last_error_at", serialize_with = "unix_seconds")]
    pub last_error_at: Option<SystemTime>,
}

fn millis<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => s.serialize_some(&((duration.as_secs_f64() * 1e5).round() / 100.0)),
        None => s.serialize_none(),
    }
}

fn unix_seconds<S: serde::Serializer>(value: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    let seconds = value
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|since| since.as_secs());
    match seconds {
        Some(seconds) => s.serialize_some(&seconds),
        None => s.serialize_none(),
    }
}

/// The last report and when it was made.
#[derive(Default)]
pub(crate) struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Arc<Health>)>>,
}

impl Cache {
    /// A report at most [`FRESH_FOR`] old. Callers that arrive while one is being made wait for
    /// it instead of pinging again.
    pub(crate) async fn get(&self, state: &State) -> Arc<Health> {
        let mut last = self.last.lock().await;
        if let Some((at, health)) = &*last
            && at.elapsed() < FRESH_FOR
        {
            return health.clone();
        }
        let health = Arc::new(check(state).await);
        *last = Some((Instant::now(), health.clone()));
        health
    }
}

/// Pings every pool and cluster of `state`.
async fn check(state: &State) -> Health {
    let required = |kind: NeedKind, name: &str| {
        state.plugins.all.iter().any(|entry| {
            entry
                .registration
                .needs
                .iter()
                .any(|need| need.kind == kind && need.name == name && !need.optional)
        })
    };
    // Owned inputs for the pings, so that their futures borrow nothing.
    let pools: Vec<(Arc<PoolEntry>, bool)> = state
        .pools
        .iter()
        .map(|entry| (entry.clone(), required(NeedKind::Pool, &entry.config.name)))
        .collect();
    let clusters: Vec<(Arc<ClusterEntry>, bool)> = state
        .clusters
        .iter()
        .map(|entry| {
            (
                entry.clone(),
                required(NeedKind::Cluster, &entry.config.name),
            )
        })
        .collect();
    let mut connections: Vec<ConnectionHealth> = futures_util::stream::iter(pools)
        .map(pool_health)
        .buffered(PINGS_AT_ONCE)
        .collect()
        .await;
    let clusters: Vec<ConnectionHealth> = futures_util::stream::iter(clusters)
        .map(cluster_health)
        .buffered(PINGS_AT_ONCE)
        .collect()
        .await;
    connections.extend(clusters);
    let ready = connections.iter().all(|c| c.reachable || !c.required);
    Health { ready, connections }
}

async fn pool_health((entry, required): (Arc<PoolEntry>, bool)) -> ConnectionHealth {
    let (reachable, round_trip, error) = ping(entry.handle()).await;
    let status = redplug::host::PoolBackend::status(&*entry.engine);
    let last = entry.engine.last_error();
    ConnectionHealth {
        kind: NeedKind::Pool.as_str(),
        name: entry.config.name.clone(),
        reachable,
        round_trip,
        error,
        required,
        open: status.size,
        idle: status.idle,
        last_error: last.as_ref().map(|(error, _)| error.clone()),
        last_error_at: last.map(|(_, at)| at),
    }
}

async fn cluster_health((entry, required): (Arc<ClusterEntry>, bool)) -> ConnectionHealth {
    let (reachable, round_trip, error) = ping(entry.handle()).await;
    let status = entry.engine.exclusive_status();
    let last = entry.engine.last_error();
    ConnectionHealth {
        kind: NeedKind::Cluster.as_str(),
        name: entry.config.name.clone(),
        reachable,
        round_trip,
        error,
        required,
        open: status.size,
        idle: status.available,
        last_error: last.as_ref().map(|(error, _)| error.clone()),
        last_error_at: last.map(|(_, at)| at),
    }
}

/// One `PING`, never retried, within [`PING_TIMEOUT`]: answered, how fast, or why not.
async fn ping<C: redis::aio::ConnectionLike + Send>(
    mut connection: C,
) -> (bool, Option<Duration>, Option<String>) {
    let started = Instant::now();
    let command = redis::cmd("PING");
    let ping = command.query_async::<String>(&mut connection);
    match tokio::time::timeout(PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => (true, Some(started.elapsed()), None),
        Ok(Err(error)) => (false, None, Some(error.to_string())),
        Err(_) => (
            false,
            None,
            Some(format!("no answer to PING within {PING_TIMEOUT:?}")),
        ),
    }
}
