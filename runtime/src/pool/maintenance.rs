//! The per-pool housekeeping deadpool does not do: keeping `min_idle_conns` open, trimming
//! idle connections beyond `max_idle_conns`, closing connections idle longer than
//! `conn_max_idle_time` or older than `conn_max_life_time`, and dropping connections the
//! server closed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool::managed::Metrics;
use futures_util::future::join_all;
use redis::RedisResult;
use redplug::host::PoolBackend;
use tokio::task::JoinHandle;

use super::{LaneUse, PoolEngine};
use crate::config::ConnectionOptions;

/// Why a connection must be closed instead of used again, if it must: older than `max_life`
/// (`conn_max_life_time`) or idle longer than `max_idle` (`conn_max_idle_time`). Pools and
/// clusters ask before they hand a connection out, maintenance on every round.
pub(crate) fn expired(
    metrics: &Metrics,
    max_idle: Option<Duration>,
    max_life: Option<Duration>,
) -> Option<&'static str> {
    if max_life.is_some_and(|max| metrics.age() >= max) {
        return Some("reached conn_max_life_time");
    }
    if max_idle.is_some_and(|max| metrics.last_used() >= max) {
        return Some("idle longer than conn_max_idle_time");
    }
    None
}

/// The limits maintenance enforces for one pool.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    min_idle: usize,
    max_idle: Option<usize>,
    max_idle_time: Option<Duration>,
    max_life_time: Option<Duration>,
    interval: Duration,
}

impl Limits {
    /// The limits of a pool configured with `options`.
    pub(crate) fn new(options: &ConnectionOptions) -> Self {
        // Check often enough to honour the shortest configured time within about a quarter of
        // it, but no more than 20 times a second and at least once a second.
        let shortest = [options.conn_max_idle_time, options.conn_max_life_time]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(4));
        let interval = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        Self {
            min_idle: options.min_idle_conns,
            max_idle: options.max_idle_conns,
            max_idle_time: options.conn_max_idle_time,
            max_life_time: options.conn_max_life_time,
            interval,
        }
    }
}

/// How many connections [`top_up`] opens at once: enough to warm a pool quickly, few enough not
/// to flood the server's accept queue (a burst of thousands of dials would time out against
/// its listen backlog rather than against the server).
const DIALS_AT_ONCE: usize = 32;

/// Opens connections until `min_idle_conns` are idle. At startup a failure here stops the
/// gateway; later, maintenance logs it and tries again on its next round.
pub(crate) async fn top_up(engine: &PoolEngine, min_idle: usize) -> RedisResult<usize> {
    let status = engine.pool().status();
    let room = status.max_size.saturating_sub(status.size);
    let wanted = min_idle.saturating_sub(status.available).min(room);
    if wanted == 0 {
        return Ok(0);
    }
    // Holding every checkout until all are done forces deadpool to open new connections
    // instead of handing the same idle one out again; dropping them leaves them idle.
    let mut held = Vec::with_capacity(wanted + status.available);
    let mut left = wanted + status.available;
    while left > 0 {
        let batch = left.min(DIALS_AT_ONCE);
        left -= batch;
        for checkout in join_all((0..batch).map(|_| engine.pool().get())).await {
            match checkout {
                Ok(object) => held.push(object),
                Err(deadpool::managed::PoolError::Backend(error)) => return Err(error),
                Err(_) => {}
            }
        }
    }
    Ok(held.len().saturating_sub(status.available))
}

/// One round of housekeeping; `lane_idle` remembers when the shared lane was last used.
pub(crate) async fn run_once(engine: &PoolEngine, limits: &Limits, lane_idle: &mut LaneUse) {
    let mut idle_kept = 0;
    let result = engine.pool().retain(|connection, metrics| {
        let stale = connection.is_closed()
            || expired(&metrics, limits.max_idle_time, limits.max_life_time).is_some();
        let keep = !stale && limits.max_idle.is_none_or(|max| idle_kept < max);
        if keep {
            idle_kept += 1;
        }
        keep
    });
    if !result.removed.is_empty() {
        tracing::debug!(
            pool = engine.name(),
            closed = result.removed.len(),
            "closed idle connections that were broken, expired or beyond max_idle_conns"
        );
    }
    drop(result);
    engine.retire_lanes(limits.max_life_time, lane_idle, limits.max_idle_time);
    if limits.min_idle > 0
        && let Err(error) = top_up(engine, limits.min_idle).await
    {
        tracing::warn!(pool = engine.name(), %error, "could not open min_idle_conns connections; will retry");
    }
}

/// Spawns the maintenance task of one pool. It holds the pool weakly and stops when the pool
/// is closed or dropped; the runtime also aborts it on shutdown.
pub(crate) fn spawn(engine: &Arc<PoolEngine>, limits: Limits) -> JoinHandle<()> {
    let weak: Weak<PoolEngine> = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(limits.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lane_idle = LaneUse::default();
        loop {
            ticker.tick().await;
            let Some(engine) = weak.upgrade() else {
                return;
            };
            if engine.is_closed() {
                return;
            }
            run_once(&engine, &limits, &mut lane_idle).await;
            engine.telemetry().record_status(&engine.status());
        }
    })
}
