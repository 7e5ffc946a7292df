//! The shared lane: the one connection of a pool that every plain command shares, opened on
//! first use, replaced when it breaks, and retired by maintenance when it is too old or idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use deadpool::managed::Object;
use redis::{Cmd, RedisError, RedisResult, Value};

use super::{Attempt, Command, Commands, Manager, PoolEngine, RESPONSE_TIMEOUT};
use crate::net::dial::Connection;
use crate::retry::{breaks_connection, io_error};

/// The connection every plain command shares, replaced when it breaks or expires.
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
pub(crate) struct LaneUse {
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

/// The lane's connection: a checked-out pool object and a clone of it that commands use.
pub(super) struct LaneConn {
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

    /// Replaces a missing lane, one task at a time. Tasks that wait meanwhile share the
    /// outcome: the new lane, or the failure, so that a server that does not answer costs each
    /// of them one attempt's time (`pool_timeout` to find a free connection plus
    /// `dial_timeout` to open one), not one attempt per task ahead of it.
    pub(super) async fn open_lane(&self) -> RedisResult<Arc<LaneConn>> {
        let attempts_before = self.lane.attempts().0;
        let _turn = self.lane.reconnect.lock().await;
        if let Some(current) = self.live_lane() {
            return Ok(current);
        }
        if self.is_closed() {
            return Err(self.shut_down());
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
        let lane = Arc::new(LaneConn {
            generation: self.lane.generation.fetch_add(1, Ordering::Relaxed),
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
    pub(super) fn live_lane(&self) -> Option<Arc<LaneConn>> {
        let current = self.lane.current.load_full()?;
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
        let lane = match self.live_lane() {
            Some(lane) => lane,
            // Boxed, as in `with_retries`: a dial's state machine is kilobytes.
            None => Box::pin(self.open_lane()).await?,
        };
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

    /// Drops the lane's connection if it is still `failed`, so the next attempt gets another.
    pub(super) fn invalidate(&self, failed: &Arc<LaneConn>) {
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
}
