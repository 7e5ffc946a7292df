//! Polling with a deadline: the harness's (and the tests') replacement for fixed sleeps.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, sleeping a little more each time, and returns its value.
///
/// Panics when `timeout` passes, naming `what` was awaited and the last error `check` gave.
/// Blocks the thread; inside async tests prefer [`wait_for_async`].
///
/// ```no_run
/// use std::time::Duration;
/// let server = redplug_testkit::RedisServer::start();
/// let mut con = server.conn();
/// let clients: usize = redplug_testkit::wait_for("two clients", Duration::from_secs(5), || {
///     let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).map_err(|e| e.to_string())?;
///     let n = list.lines().count();
///     if n >= 2 { Ok(n) } else { Err(format!("{n} connected")) }
/// });
/// ```
pub fn wait_for<T, E: Display>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> Result<T, E>,
) -> T {
    try_wait_for(timeout, check).unwrap_or_else(|last| timed_out(what, timeout, last))
}

/// [`wait_for`] for async tests: `check` is a future and the wait yields to the runtime.
pub async fn wait_for_async<T, E: Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = FIRST_DELAY;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => timed_out(what, timeout, last),
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Like [`wait_for`] but returns the last error instead of panicking, for callers that add
/// context (a server log) to the failure.
pub(crate) fn try_wait_for<T, E>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    let mut delay = FIRST_DELAY;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => {}
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_DELAY);
    }
}

fn timed_out(what: &str, timeout: Duration, last: impl Display) -> ! {
    panic!("timed out after {timeout:?} waiting for {what}; last result: {last}")
}
