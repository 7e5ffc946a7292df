//! The shared lanes: the connections of a pool that plain commands share, opened on first use,
//! replaced when they break, and retired by maintenance when they are too old or idle.
//!
//! Commands go to the first lane while it has fewer than [`SPILL_AT`] commands waiting for a
//! reply. Past that, they **spill** over to the next lane, which is opened then, and once every
//! lane is that busy, to the least busy one. A pool that runs one command at a time therefore
//! keeps a single connection; a busy pool spreads its commands over up to [`MAX_LANES`]
//! connections, each with its own driver, which gathers its tasks' commands itself (see
//! [`crate::net::wire`]). The gain is overlap: while the server works through one lane's
//! batch, the client gathers the next on another, where one connection makes the two sides
//! take turns (`benches/NOTES.md` has the measurements, across a network and to this host).
//!
//! Commands awaited one after another keep their order on any lane; commands that run
//! concurrently are not ordered relative to each other, and on different lanes may run in
//! either order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use deadpool::managed::{Object, Timeouts};
use redis::{Cmd, RedisError, RedisResult, Value};

use super::{Attempt, Command, Commands, Manager, PoolEngine, RESPONSE_TIMEOUT};
use crate::net::dial::Connection;
use crate::retry::{breaks_connection, io_error};

/// Commands waiting on a lane from which the next command spills over to another lane.
pub(super) const SPILL_AT: u64 = 4;

/// The most lanes a pool opens; fewer when `pool_size` is small (see [`Lanes::for_pool_size`]).
pub(super) const MAX_LANES: usize = 4;

/// After a lane could not be opened for spilling (no free connection, a failed dial), how long
/// commands stay on the open lanes before another try.
const SPILL_BACKOFF: Duration = Duration::from_secs(1);

/// A pool's shared lanes: the first carries every command until it is busy, the others take
/// what spills over.
pub(super) struct Lanes {
    slots: Box<[Lane]>,
    /// When [`Lanes::slots`] were made, the origin of `Lane::spill_failed`.
    epoch: Instant,
}

/// Which lane a command takes, as [`PoolEngine::pick_lane`] decides.
pub(super) enum Pick {
    /// An open lane.
    Use(Arc<LaneConn>),
    /// The first lane is not open: open it, as every command must wait for it anyway.
    OpenFirst,
    /// Every open lane is busy and lane `.0` is not open: try to open it without waiting for a
    /// connection, and take `.1`, the least busy open lane, if that fails.
    Spill(usize, Arc<LaneConn>),
}

impl Lanes {
    /// Up to half of the pool's connections may carry lanes, at least one and at most
    /// [`MAX_LANES`]: the rest stay for exclusive checkouts. Lanes past the first open only
    /// with a connection the pool has free, so they never keep an exclusive checkout waiting
    /// that would otherwise have found one.
    pub(super) fn for_pool_size(max_size: usize) -> Self {
        let count = (max_size / 2).clamp(1, MAX_LANES);
        Self {
            slots: (0..count).map(|_| Lane::default()).collect(),
            epoch: Instant::now(),
        }
    }

    /// How many lanes are open.
    pub(super) fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|lane| lane.current.load().is_some())
            .count()
    }

    /// Forgets every lane; commands in flight on them finish or fail there.
    pub(super) fn clear(&self) {
        for lane in &self.slots {
            lane.current.store(None);
        }
    }

    /// The open lanes.
    pub(super) fn current(&self) -> impl Iterator<Item = Arc<LaneConn>> + '_ {
        self.slots
            .iter()
            .filter_map(|lane| lane.current.load_full())
    }
}

/// One lane's connection, replaced when it breaks or expires.
#[derive(Default)]
pub(super) struct Lane {
    pub(super) current: ArcSwapOption<LaneConn>,
    /// One task reconnects at a time; the others wait for its result instead of dialing too.
    reconnect: tokio::sync::Mutex<()>,
    /// Attempts to open the lane so far, and how the last one failed, if it did: a task that
    /// waited while another attempt ran takes that attempt's failure as its own answer rather
    /// than dialing again.
    attempts: std::sync::Mutex<(u64, Option<RedisError>)>,
    generation: AtomicU64,
    /// When spilling into this lane last failed, as nanoseconds after [`Lanes::epoch`] plus
    /// one; zero when it has not.
    spill_failed: AtomicU64,
}

impl Lane {
    fn attempts(&self) -> std::sync::MutexGuard<'_, (u64, Option<RedisError>)> {
        // A counter and a cloned error: a panic elsewhere cannot leave them half-written.
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// When maintenance last saw each of a pool's shared lanes used, to retire them once idle;
/// start with `LaneUse::default()`.
#[derive(Debug, Default)]
pub(crate) struct LaneUse {
    slots: Vec<SlotUse>,
}

#[derive(Debug)]
struct SlotUse {
    /// The lane's generation and the commands started on it.
    uses: (u64, u64),
    since: Instant,
}

/// The lane's connection: a checked-out pool object and a clone of it that commands use.
pub(super) struct LaneConn {
    /// Which of the pool's lanes this is.
    slot: usize,
    generation: u64,
    /// The pool connection: commands go through its shared connection, and its state tells
    /// that the server closed it before a command is written to it.
    pub(super) link: Connection,
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
    /// Closes each lane's connection that is older than `max_life` or unused since the last
    /// call while `max_idle` passed, so the next command that needs it opens a fresh one.
    pub(crate) fn retire_lanes(
        &self,
        max_life: Option<Duration>,
        last_use: &mut LaneUse,
        max_idle: Option<Duration>,
    ) {
        for (slot, lane) in self.lanes.slots.iter().enumerate() {
            let Some(conn) = lane.current.load_full() else {
                continue;
            };
            let uses = (conn.generation, conn.link.backlog().started());
            if last_use.slots.len() <= slot {
                last_use.slots.resize_with(slot + 1, || SlotUse {
                    uses,
                    since: Instant::now(),
                });
            }
            let seen = &mut last_use.slots[slot];
            if uses != seen.uses {
                *seen = SlotUse {
                    uses,
                    since: Instant::now(),
                };
            }
            let too_old = max_life.is_some_and(|max| conn.created.elapsed() >= max);
            let too_idle = max_idle.is_some_and(|max| seen.since.elapsed() >= max);
            if too_old || too_idle {
                tracing::debug!(
                    pool = %self.name, lane = slot, too_old, too_idle,
                    "retiring a shared connection"
                );
                conn.broken.store(true, Ordering::Relaxed);
                lane.current
                    .compare_and_swap(&Some(conn.clone()), None::<Arc<LaneConn>>);
            }
        }
    }

    /// The lane for the next command: the first open lane with fewer than [`SPILL_AT`]
    /// commands waiting, else a lane to open, else the least busy one.
    pub(super) fn pick_lane(&self) -> Pick {
        let Some(first) = self.live_lane(0) else {
            return Pick::OpenFirst;
        };
        if self.lanes.slots.len() == 1 {
            return Pick::Use(first);
        }
        let mut waiting = first.link.backlog().unanswered();
        if waiting < SPILL_AT {
            return Pick::Use(first);
        }
        let mut least_busy = first;
        for slot in 1..self.lanes.slots.len() {
            match self.live_lane(slot) {
                Some(lane) => {
                    let lane_waiting = lane.link.backlog().unanswered();
                    if lane_waiting < SPILL_AT {
                        return Pick::Use(lane);
                    }
                    if lane_waiting < waiting {
                        waiting = lane_waiting;
                        least_busy = lane;
                    }
                }
                None if self.may_spill_into(slot) => return Pick::Spill(slot, least_busy),
                None => {}
            }
        }
        Pick::Use(least_busy)
    }

    /// Whether lane `slot` may be opened now: nobody is opening it and the last try to is
    /// [`SPILL_BACKOFF`] ago.
    fn may_spill_into(&self, slot: usize) -> bool {
        let lane = &self.lanes.slots[slot];
        let failed = lane.spill_failed.load(Ordering::Relaxed);
        if failed != 0 {
            let failed_at = self.lanes.epoch + Duration::from_nanos(failed - 1);
            if failed_at.elapsed() < SPILL_BACKOFF {
                return false;
            }
        }
        lane.reconnect.try_lock().is_ok()
    }

    /// Opens lane `slot` for a command that found the open lanes busy, with a connection the
    /// pool has free now: a busy pool does not wait for one. The command runs on the new lane,
    /// or on `busy` if none could be had.
    pub(super) async fn spill(&self, slot: usize, busy: Arc<LaneConn>) -> Arc<LaneConn> {
        let lane = &self.lanes.slots[slot];
        let Ok(_turn) = lane.reconnect.try_lock() else {
            return busy;
        };
        if let Some(current) = self.live_lane(slot) {
            return current;
        }
        if self.is_closed() {
            return busy;
        }
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            create: None,
            recycle: None,
        };
        match self.pool.timeout_get(&now).await {
            Ok(object) => self.install(slot, object),
            Err(error) => {
                let since =
                    u64::try_from(self.lanes.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                lane.spill_failed
                    .store(since.saturating_add(1), Ordering::Relaxed);
                tracing::debug!(
                    pool = %self.name, lane = slot, %error,
                    "no connection free for another shared lane; staying on the open ones"
                );
                busy
            }
        }
    }

    /// Makes `object` lane `slot`'s connection.
    fn install(&self, slot: usize, object: Object<Manager>) -> Arc<LaneConn> {
        let lane = &self.lanes.slots[slot];
        let conn = Arc::new(LaneConn {
            slot,
            generation: lane.generation.fetch_add(1, Ordering::Relaxed),
            link: Connection::clone(&object),
            object: std::sync::Mutex::new(Some(object)),
            broken: AtomicBool::new(false),
            created: Instant::now(),
        });
        lane.current.store(Some(conn.clone()));
        conn
    }

    /// Replaces a missing first lane, one task at a time. Tasks that wait meanwhile share the
    /// outcome: the new lane, or the failure, so that a server that does not answer costs each
    /// of them one attempt's time (`pool_timeout` to find a free connection plus
    /// `dial_timeout` to open one), not one attempt per task ahead of it.
    pub(super) async fn open_lane(&self) -> RedisResult<Arc<LaneConn>> {
        let first = &self.lanes.slots[0];
        let attempts_before = first.attempts().0;
        let _turn = first.reconnect.lock().await;
        if let Some(current) = self.live_lane(0) {
            return Ok(current);
        }
        if self.is_closed() {
            return Err(self.shut_down());
        }
        {
            let attempts = first.attempts();
            if attempts.0 != attempts_before
                && let Some(failure) = &attempts.1
            {
                return Err(failure.clone());
            }
        }
        let checkout = self.checkout().await;
        {
            let mut attempts = first.attempts();
            attempts.0 += 1;
            attempts.1 = checkout.as_ref().err().cloned();
        }
        Ok(self.install(0, checkout?))
    }

    /// Lane `slot`'s current connection unless the server closed it while it sat idle (a
    /// restart, `CLIENT KILL`, an idle timeout): writing to it would fail a command that never
    /// reached the server, and `query_once` could not even retry it.
    fn live_lane(&self, slot: usize) -> Option<Arc<LaneConn>> {
        let current = self.lanes.slots[slot].current.load_full()?;
        if current.link.is_closed() {
            self.invalidate(&current);
            return None;
        }
        Some(current)
    }

    /// One try of `cmd` on the lane: not retried, not traced, errors not annotated. For a
    /// caller with a retry loop and telemetry of its own (a cluster sending a command straight
    /// to the master that serves its key).
    pub(crate) async fn lane_once(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.lane_try(Command {
            cmd,
            transient_errors: false,
        })
        .await
    }

    /// [`PoolEngine::lane_once`] for `ASKING` and then `cmd`, in one write, so that no other
    /// command on the lane comes between them: the reply to `cmd`.
    pub(crate) async fn lane_once_asking(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut asking = redis::pipe();
        asking.cmd("ASKING").ignore().add_command(cmd.clone());
        let replies = self
            .lane_try(Commands {
                pipeline: &asking,
                offset: 1,
                count: 1,
                transient_errors: false,
            })
            .await?;
        replies.into_iter().next().ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "no reply after ASKING",
            ))
        })
    }

    async fn lane_try<A: Attempt>(&self, attempt: A) -> RedisResult<A::Output> {
        let lane = self.lane().await?;
        let backlog = lane.link.backlog();
        let in_flight = backlog.track();
        let result = attempt.send(&lane.link.conn).await;
        drop(in_flight);
        if let Err(error) = &result {
            if breaks_connection(error) {
                self.invalidate(&lane);
            }
            if backlog.timed_out() {
                return Err(io_error(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{}: the server sent no reply for {RESPONSE_TIMEOUT:?}, so the shared \
                         connection was closed; the command may or may not have run",
                        self.name
                    ),
                ));
            }
        }
        result
    }

    /// The lane for the next command (see [`PoolEngine::pick_lane`]), opened if need be.
    pub(super) async fn lane(&self) -> RedisResult<Arc<LaneConn>> {
        match self.pick_lane() {
            Pick::Use(lane) => Ok(lane),
            // Boxed: a checkout may dial, and a dial's state machine is kilobytes that every
            // command's future would otherwise carry and copy, though almost none dial.
            Pick::OpenFirst => Box::pin(self.open_lane()).await,
            Pick::Spill(slot, busy) => Ok(Box::pin(self.spill(slot, busy)).await),
        }
    }

    /// Drops a lane's connection if it is still `failed`, so the next attempt gets another.
    pub(super) fn invalidate(&self, failed: &Arc<LaneConn>) {
        failed.broken.store(true, Ordering::Relaxed);
        let lane = &self.lanes.slots[failed.slot];
        let current = lane.current.load();
        if current
            .as_ref()
            .is_some_and(|conn| conn.generation == failed.generation)
        {
            lane.current
                .compare_and_swap(&*current, None::<Arc<LaneConn>>);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use redplug_testkit::RedisServer;

    use super::super::PoolEngine;
    use crate::config::{Address, ConnectionOptions, PoolConfig, PoolServer};
    use crate::net::coalesce::tests::see_as_remote;
    use crate::net::dial::Connector;

    fn engine(server: &RedisServer, pool_size: usize) -> Arc<PoolEngine> {
        let address = Address {
            host: "127.0.0.1".into(),
            port: server.port(),
        };
        let options = ConnectionOptions {
            pool_size,
            ..ConnectionOptions::default()
        };
        let config = PoolConfig {
            name: "lanes".into(),
            server: PoolServer::Address(address.clone()),
            db: 0,
            options,
        };
        let connector = Connector::new(
            config.name.as_str().into(),
            address,
            0,
            &config.options,
            None,
        );
        PoolEngine::new(&config, connector).expect("the pool builds")
    }

    /// `tasks` tasks, each running `INCR key` `per_task` times one after another; returns the
    /// counter's value.
    async fn incr_from(engine: &Arc<PoolEngine>, tasks: usize, per_task: usize) -> i64 {
        let mut running = Vec::new();
        for _ in 0..tasks {
            let engine = engine.clone();
            running.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let mut incr = redis::cmd("INCR");
                    incr.arg("lanes:counter");
                    engine.send_unboxed(&incr).await.expect("INCR");
                }
            }));
        }
        for task in running {
            task.await.expect("a task");
        }
        let mut get = redis::cmd("GET");
        get.arg("lanes:counter");
        let value = engine.send_unboxed(&get).await.expect("GET");
        redis::from_redis_value(value).expect("a number")
    }

    /// A pool to `server` keeps one lane for one command at a time and spills over to more
    /// when busy, every command answered once.
    async fn busy_pools_spill_over_and_lose_nothing(server: &RedisServer) {
        let engine = engine(server, 10);

        assert_eq!(incr_from(&engine, 1, 200).await, 200);
        assert_eq!(
            engine.lanes.open(),
            1,
            "one command at a time needs one lane"
        );

        assert_eq!(incr_from(&engine, 64, 200).await, 200 + 64 * 200);
        let open = engine.lanes.open();
        assert!(
            (2..=super::MAX_LANES).contains(&open),
            "64 tasks opened {open} lanes, expected 2 to {}",
            super::MAX_LANES
        );
        let status = engine.pool.status();
        assert_eq!(
            status.size, open,
            "each lane holds one connection: {status:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn across_a_network_busy_pools_spill_over_to_more_lanes_and_lose_nothing() {
        let server = RedisServer::start();
        see_as_remote(server.port());
        busy_pools_spill_over_and_lose_nothing(&server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn to_this_host_busy_pools_spill_over_too() {
        let server = RedisServer::start();
        busy_pools_spill_over_and_lose_nothing(&server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_pools_keep_one_lane() {
        let server = RedisServer::start();
        let engine = engine(&server, 3);
        assert_eq!(incr_from(&engine, 64, 100).await, 64 * 100);
        assert_eq!(
            engine.lanes.open(),
            1,
            "pool_size 3 leaves no room for a second lane"
        );
    }

    /// Spilling never waits for a connection: with every other connection checked out, busy
    /// commands stay on the open lane at once instead of waiting `pool_timeout` for one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_pool_keeps_commands_on_the_open_lane_without_waiting() {
        let server = RedisServer::start();
        let engine = engine(&server, 4);
        assert_eq!(incr_from(&engine, 1, 1).await, 1);
        let held = [
            engine.checkout().await.expect("a free connection"),
            engine.checkout().await.expect("a free connection"),
            engine.checkout().await.expect("a free connection"),
        ];
        let started = Instant::now();
        assert_eq!(incr_from(&engine, 64, 100).await, 1 + 64 * 100);
        let took = started.elapsed();
        assert_eq!(
            engine.lanes.open(),
            1,
            "no connection was free for a second lane"
        );
        assert!(
            took < Duration::from_secs(3),
            "6400 commands took {took:?}: a spill waited for a connection"
        );
        drop(held);
    }
}
