//! How pools and clusters word their failures, so that both say the same thing the same way.
//! `owner` is always how the failing connection set is named to the user: ``pool `cache` `` or
//! ``cluster `sessions` ``.

use std::io;
use std::time::Duration;

use deadpool::managed::{self, PoolError, TimeoutType};
use redis::RedisError;

use crate::retry::io_error;

/// ``pool `name` ``, as every pool error starts.
pub(crate) fn pool(name: &str) -> String {
    format!("pool `{name}`")
}

/// ``cluster `name` ``, as every cluster error starts.
pub(crate) fn cluster(name: &str) -> String {
    format!("cluster `{name}`")
}

/// What every call and checkout gets once the runtime shut the connections down.
pub(crate) fn shut_down(owner: &str) -> RedisError {
    io_error(
        io::ErrorKind::NotConnected,
        format!("{owner} is shut down: the runtime stopped"),
    )
}

/// A connection used after it went back to its pool.
pub(crate) fn already_returned() -> RedisError {
    io_error(
        io::ErrorKind::NotConnected,
        "the connection was already returned".into(),
    )
}

/// A checkout that failed: the dial's own error, or why no connection was free in time.
/// `what` is what was waited for ("connection"), `lane` says what else holds one.
pub(crate) fn checkout(
    owner: &str,
    error: PoolError<RedisError>,
    waited: Waited<'_>,
) -> RedisError {
    match error {
        PoolError::Backend(error)
        | PoolError::PostCreateHook(managed::HookError::Backend(error)) => error,
        PoolError::Timeout(TimeoutType::Wait) => {
            let what = waited.what;
            io_error(
                io::ErrorKind::TimedOut,
                format!(
                    "{owner}: no {what} became free within pool_timeout ({:?}): all {} {what}s are in \
                 use{} and {} other tasks are waiting; raise `pool_size` or hold exclusive \
                 connections for less time",
                    waited.pool_timeout,
                    waited.max_size,
                    waited.also,
                    waited.waiting.saturating_sub(1),
                ),
            )
        }
        PoolError::Closed => shut_down(owner),
        other => io_error(
            io::ErrorKind::Other,
            format!("{owner}: checkout failed: {other}"),
        ),
    }
}

/// What a checkout waited for, to say why it gave up.
pub(crate) struct Waited<'a> {
    /// "connection", "exclusive connection".
    pub what: &'a str,
    /// Said after "all N are in use", such as " (one carries the shared command lane)".
    pub also: &'a str,
    pub pool_timeout: Duration,
    pub max_size: usize,
    /// Tasks waiting, this one included.
    pub waiting: usize,
}

/// Names `owner` in a network failure the caller would otherwise see bare. Server replies pass
/// through untouched, and so does an error that names its owner already.
pub(crate) fn annotate(owner: &str, error: RedisError, network: bool) -> RedisError {
    let message = error.to_string();
    if !network || message.contains(owner) {
        return error;
    }
    let kind = if error.is_timeout() {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::ConnectionReset
    };
    io_error(kind, format!("{owner}: {message}"))
}

/// The last failure of a pool or cluster and when it happened, for health reports.
#[derive(Default)]
pub(crate) struct LastError(std::sync::Mutex<Option<(String, std::time::SystemTime)>>);

impl LastError {
    /// Remembers `error` as the last failure.
    pub(crate) fn set(&self, error: &RedisError) {
        let entry = Some((error.to_string(), std::time::SystemTime::now()));
        match self.0.lock() {
            Ok(mut last) => *last = entry,
            Err(poisoned) => *poisoned.into_inner() = entry,
        }
    }

    /// The last failure and when it happened, if there was one.
    pub(crate) fn get(&self) -> Option<(String, std::time::SystemTime)> {
        match self.0.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
