//! Exclusive connections: the pool's checked-out connection ([`PoolCheckout`]) and how long a
//! command on any exclusive connection, a pool's or a cluster's, may wait for its reply.
//!
//! Exclusive connections (`checkout()`) exist for transactions and blocking commands, so they
//! cannot share the shared lane's rule that the server answer within 3 s. They follow go-redis
//! instead: an ordinary command gets the same 3 s as on the lane; a blocking command
//! (`BLPOP key 5`, `XREAD BLOCK 5000 ...`, `WAIT 1 5000`) gets its own timeout plus those 3 s
//! (go-redis adds 10 s); and a blocking command told to wait forever (timeout `0`) gets no
//! deadline at all. Such a command ends when the server answers or the connection dies: TCP
//! keepalive (see [`crate::connect::KEEPALIVE_IDLE`]) ends a connection whose server's host
//! vanished within about 30 s, but a server process that is frozen while its host still
//! answers holds the command until it runs again.

use std::future::Future;
use std::io;
use std::time::Duration;

use std::sync::Arc;

use deadpool::managed::Object;
use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::{Manager, RESPONSE_TIMEOUT};
use crate::failure;
use crate::retry::{breaks_connection, io_error};

/// What a blocking command's own timeout is extended by before its reply is given up on: the
/// same time an ordinary command gets for its reply.
pub(crate) const BLOCKING_MARGIN: Duration = RESPONSE_TIMEOUT;

/// The longest `cmd` may wait for its reply on an exclusive connection; `None` for a blocking
/// command asked to wait forever.
pub(crate) fn reply_limit(cmd: &Cmd) -> Option<Duration> {
    match blocking_timeout(cmd) {
        None => Some(RESPONSE_TIMEOUT),
        Some(Duration::ZERO) => None,
        Some(timeout) => Some(timeout.saturating_add(BLOCKING_MARGIN)),
    }
}

/// The longest the commands of `pipeline` may wait together: the server runs them one after
/// the other, so their blocking timeouts add up.
pub(crate) fn pipeline_reply_limit(pipeline: &Pipeline) -> Option<Duration> {
    let mut blocking = Duration::ZERO;
    let mut any = false;
    for cmd in pipeline.cmd_iter() {
        match blocking_timeout(cmd) {
            None => {}
            Some(Duration::ZERO) => return None,
            Some(timeout) => {
                any = true;
                blocking = blocking.saturating_add(timeout);
            }
        }
    }
    Some(if any {
        blocking.saturating_add(BLOCKING_MARGIN)
    } else {
        RESPONSE_TIMEOUT
    })
}

/// Runs `reply` for at most `limit`; past it, fails with a timeout naming `owner` (a pool or
/// cluster, as in "pool `cache`"). The caller must close the connection then: the server may
/// still answer, and the command may or may not have run.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    owner: impl FnOnce() -> String,
    reply: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    let Some(limit) = limit else {
        return reply.await;
    };
    match tokio::time::timeout(limit, reply).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(&owner(), limit)),
    }
}

fn timed_out(owner: &str, limit: Duration) -> RedisError {
    io_error(
        io::ErrorKind::TimedOut,
        format!(
            "{owner}: no reply within {limit:?} on an exclusive connection, so the connection \
             was closed; the command may or may not have run (a command gets \
             {RESPONSE_TIMEOUT:?}, a blocking one its own timeout plus {BLOCKING_MARGIN:?}, \
             and one with timeout 0 no limit)"
        ),
    )
}

/// The timeout a blocking command asks the server for, `Some(ZERO)` for "forever", or `None`
/// when `cmd` does not block.
fn blocking_timeout(cmd: &Cmd) -> Option<Duration> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => bytes,
            _ => &[][..],
        })
        .collect();
    let (name, rest) = args.split_first()?;
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        // The timeout, in seconds, comes last.
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" | b"BRPOPLPUSH" | b"BLMOVE" => {
            seconds(rest.last()?)
        }
        // The timeout, in seconds, comes first.
        b"BLMPOP" | b"BZMPOP" => seconds(rest.first()?),
        // `BLOCK milliseconds` among the options; without it the command does not block.
        b"XREAD" | b"XREADGROUP" => {
            let at = rest
                .iter()
                .take_while(|arg| !arg.eq_ignore_ascii_case(b"STREAMS"))
                .position(|arg| arg.eq_ignore_ascii_case(b"BLOCK"))?;
            millis(rest.get(at + 1)?)
        }
        // The timeout, in milliseconds, comes last.
        b"WAIT" | b"WAITAOF" => millis(rest.last()?),
        _ => None,
    }
}

/// A timeout in (possibly fractional) seconds; an unreadable one is the server's to refuse,
/// so it counts as an ordinary command.
fn seconds(arg: &[u8]) -> Option<Duration> {
    let value: f64 = std::str::from_utf8(arg).ok()?.trim().parse().ok()?;
    Duration::try_from_secs_f64(value).ok()
}

fn millis(arg: &[u8]) -> Option<Duration> {
    let value: u64 = std::str::from_utf8(arg).ok()?.trim().parse().ok()?;
    Some(Duration::from_millis(value))
}

/// A pool connection checked out for one task. Goes back to the pool on drop unless it broke
/// or missed a reply deadline.
pub(super) struct PoolCheckout {
    pub(super) object: Option<Object<Manager>>,
    pub(super) broken: bool,
    /// The pool's name, for errors.
    pub(super) pool: Arc<str>,
    pub(super) shutdown: tokio::sync::watch::Receiver<bool>,
}

impl PoolCheckout {
    fn conn(&mut self) -> RedisResult<&mut crate::net::wire::Wire> {
        if *self.shutdown.borrow() {
            return Err(failure::shut_down(&failure::pool(&self.pool)));
        }
        self.object
            .as_mut()
            .map(|object| &mut object.conn)
            .ok_or_else(failure::already_returned)
    }

    /// Marks the connection broken after `error`; says so when shutdown is what broke it.
    fn note(&mut self, error: RedisError) -> RedisError {
        if breaks_connection(&error) {
            self.broken = true;
        }
        if *self.shutdown.borrow() {
            return failure::shut_down(&failure::pool(&self.pool));
        }
        error
    }
}

impl Drop for PoolCheckout {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && self.broken
        {
            drop(Object::take(object));
        }
    }
}

impl ConnectionLike for PoolCheckout {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let pool = self.pool.clone();
            let reply = self.conn()?.send_packed_command(cmd);
            let result = within(reply_limit(cmd), || failure::pool(&pool), reply).await;
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
            let result = within(
                pipeline_reply_limit(pipeline),
                || failure::pool(&pool),
                replies,
            )
            .await;
            result.map_err(|error| self.note(error))
        })
    }

    fn get_db(&self) -> i64 {
        self.object.as_ref().map_or(0, |object| object.conn.db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Cmd {
        let mut cmd = redis::cmd(words[0]);
        for word in &words[1..] {
            cmd.arg(*word);
        }
        cmd
    }

    #[test]
    fn ordinary_commands_get_the_response_timeout() {
        for words in [
            &["GET", "k"][..],
            &["INCR", "k"],
            &["XREAD", "COUNT", "2", "STREAMS", "s", "0"],
            &["EXEC"],
        ] {
            assert_eq!(
                reply_limit(&cmd(words)),
                Some(RESPONSE_TIMEOUT),
                "{words:?}"
            );
        }
    }

    #[test]
    fn blocking_commands_get_their_timeout_and_a_margin() {
        let cases: [(&[&str], u64); 7] = [
            (&["BLPOP", "a", "b", "5"], 5_000),
            (&["brpop", "a", "0.5"], 500),
            (&["BLMOVE", "a", "b", "LEFT", "RIGHT", "2"], 2_000),
            (&["BLMPOP", "3", "1", "a", "LEFT"], 3_000),
            (
                &["XREAD", "COUNT", "1", "BLOCK", "1500", "STREAMS", "s", "$"],
                1_500,
            ),
            (
                &[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    "c",
                    "BLOCK",
                    "250",
                    "STREAMS",
                    "s",
                    ">",
                ],
                250,
            ),
            (&["WAIT", "1", "100"], 100),
        ];
        for (words, millis) in cases {
            assert_eq!(
                reply_limit(&cmd(words)),
                Some(Duration::from_millis(millis) + BLOCKING_MARGIN),
                "{words:?}"
            );
        }
    }

    #[test]
    fn waiting_forever_has_no_deadline() {
        assert_eq!(reply_limit(&cmd(&["BLPOP", "a", "0"])), None);
        assert_eq!(
            reply_limit(&cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"])),
            None
        );
        assert_eq!(reply_limit(&cmd(&["WAIT", "1", "0"])), None);
    }

    #[test]
    fn a_key_named_block_is_not_an_option() {
        let read = cmd(&["XREAD", "STREAMS", "BLOCK", "0"]);
        assert_eq!(reply_limit(&read), Some(RESPONSE_TIMEOUT));
    }

    #[test]
    fn pipelines_add_up_their_blocking_timeouts() {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg("k")
            .cmd("BLPOP")
            .arg("a")
            .arg(1)
            .cmd("BLPOP")
            .arg("b")
            .arg(2);
        assert_eq!(
            pipeline_reply_limit(&pipe),
            Some(Duration::from_secs(3) + BLOCKING_MARGIN)
        );
        assert_eq!(
            pipeline_reply_limit(redis::pipe().cmd("GET").arg("k")),
            Some(RESPONSE_TIMEOUT)
        );
        pipe.cmd("BLPOP").arg("c").arg(0);
        assert_eq!(pipeline_reply_limit(&pipe), None);
    }
}
