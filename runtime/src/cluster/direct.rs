//! The cluster handle's direct path: a command on one key goes straight to the shared lane of
//! the master that serves the key's slot, in the calling task.
//!
//! Through redis-rs' cluster connection every command takes a detour: it is cloned into an
//! `Arc`, sent over a channel to the connection's own task, routed there, and sent over
//! another channel to the node connection's driver; its reply comes back the same way. That
//! detour is most of what a command on a cluster costs the client. The direct path looks the
//! slot up in our own slot map (see [`topology`](super::topology)) and uses the master's pool,
//! the one `cluster_node_for_key` hands out, so it costs what a command on a pool costs.
//!
//! The direct path only takes what it can finish as redis-rs would, and hands everything else
//! to redis-rs, which follows redirects and repairs its connections:
//!
//! - commands whose key is the first argument (or the first key of a script call), from a
//!   fixed list of data commands; commands on several keys go whole to their first key's slot,
//!   as redplug sends them anyway (see the module documentation of [`cluster`](super));
//! - only while the slot map is fresh: fetched less than 10 s ago with no sign of change since.
//!   The first command that finds it stale or old fetches it again (`CLUSTER SLOTS`), the
//!   others meanwhile go through redis-rs;
//! - replies that redis-rs acts on get the same treatment from the same budget
//!   (`max_redirects`): `MOVED` follows the redirect, `ASK` sends `ASKING` and the command to
//!   the node named, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN` and `LOADING` wait redis-rs'
//!   backoff and send it again, `READONLY` reads the slot map again. When the budget is spent
//!   the reply goes to the retry loop around it (`max_retries`), exactly as from redis-rs;
//! - a broken connection marks the map stale and hands the command to redis-rs, which
//!   reconnects and sends it again, as it would have;
//! - a command that got no reply within the lane's reply timeout is not sent again, as on
//!   every path: the node may have run it.

use std::time::Duration;

use rand::Rng;
use redis::{Arg, Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::topology::{self, Reply};
use super::{ClusterEngine, redis_rs_retries};
use crate::config::{Address, ConnectionOptions};
use crate::failure;

/// redis-rs' budget for one command's redirects and retries, and its wait between retries:
/// the direct path spends the same budget the same way, so a command is sent no more often
/// than through redis-rs.
pub(super) struct Budget {
    retries: u32,
    min_ms: u64,
    max_ms: u64,
    factor: u64,
}

impl Budget {
    /// The budget redis-rs gets for `max_redirects` = `redirects` (see `client`).
    pub(super) fn new(options: &ConnectionOptions, redirects: u32) -> Self {
        let min_ms = u64::try_from(options.retry.min_backoff.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(options.retry.max_backoff.as_millis()).unwrap_or(u64::MAX);
        let factor = min_ms.max(1);
        Self {
            retries: redis_rs_retries(redirects, factor),
            min_ms,
            max_ms,
            factor,
        }
    }

    /// redis-rs' wait before retry number `retry` (from 1): `random[min, factor·2^retry)` ms,
    /// the upper end kept within `(min, max]`.
    fn wait(&self, retry: u32) -> Duration {
        let base = 2u64.saturating_pow(retry).saturating_mul(self.factor);
        let upper = base.max(self.min_ms.saturating_add(1)).min(self.max_ms);
        let upper = upper.max(self.min_ms.saturating_add(1));
        Duration::from_millis(rand::rng().random_range(self.min_ms..upper))
    }
}

/// What redis-rs does with an error reply within its budget.
enum Next {
    /// `MOVED`: send it to the node the reply names.
    Moved(Address),
    /// `ASK`: send `ASKING` and it to the node the reply names.
    Ask(Address),
    /// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`: wait, then send it again.
    Wait,
    /// `READONLY`: read the slot map again and send it where it says.
    Reroute,
    /// Any other error reply is the caller's.
    Done,
}

impl Next {
    fn after(error: &RedisError) -> Self {
        let address = || {
            let (node, _slot) = error.redirect_node()?;
            let (host, port) = node.rsplit_once(':')?;
            Some(Address {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: port.parse().ok()?,
            })
        };
        match error.kind() {
            ErrorKind::Server(ServerErrorKind::Moved) => address().map_or(Next::Done, Next::Moved),
            ErrorKind::Server(ServerErrorKind::Ask) => address().map_or(Next::Done, Next::Ask),
            ErrorKind::Server(
                ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading,
            ) => Next::Wait,
            ErrorKind::Server(ServerErrorKind::ReadOnly) => Next::Reroute,
            _ => Next::Done,
        }
    }
}

impl ClusterEngine {
    /// One attempt of `cmd` on the direct path, redirects and redis-rs' retries included;
    /// `None` when it is to go through redis-rs instead: the command has no key the direct
    /// path knows, the slot map is not fresh, or a connection broke (redis-rs then reconnects
    /// and sends it again, as it would have).
    pub(super) async fn direct(&self, cmd: &Cmd) -> Option<RedisResult<Value>> {
        let slot = topology::slot_for_key(single_key(cmd)?);
        let mut engine = match self.topology.direct(slot) {
            Some(engine) => engine,
            None => {
                self.topology.refresh_if_due().await;
                self.topology.direct(slot)?
            }
        };
        let mut asking = false;
        let mut retry = 0;
        loop {
            self.telemetry.record_node(engine.telemetry());
            let sent = if asking {
                engine.lane_once_asking(cmd).await
            } else {
                engine.lane_once(cmd).await
            };
            let reply = match sent {
                Ok(reply) => reply,
                Err(error) if error.is_timeout() => {
                    // Not sent again: the node may have run it.
                    let error = failure::annotate(&failure::cluster(&self.name), error, true);
                    self.last_error.set(&error);
                    return Some(Err(error));
                }
                Err(_) => {
                    self.topology.mark_stale();
                    return None;
                }
            };
            let Some(error) = reply.server_error() else {
                return Some(Ok(reply));
            };
            self.telemetry.record_redirect(&error);
            let next = Next::after(&error);
            if matches!(next, Next::Done) || retry >= self.budget.retries {
                // The caller's retry loop decides, as after redis-rs spent its budget.
                return Some(Ok(reply));
            }
            retry += 1;
            asking = false;
            match next {
                Next::Moved(address) => {
                    self.topology.mark_stale();
                    engine = self.topology.engine_at(&address).ok()?;
                }
                Next::Ask(address) => {
                    engine = self.topology.engine_at(&address).ok()?;
                    asking = true;
                }
                Next::Wait => tokio::time::sleep(self.budget.wait(retry)).await,
                Next::Reroute => {
                    self.topology.mark_stale();
                    self.topology.refresh_if_due().await;
                    engine = self.topology.direct(slot)?;
                }
                Next::Done => return Some(Ok(reply)),
            }
        }
    }
}

/// Where a command's key is.
enum KeyAt {
    /// The first argument.
    First,
    /// A script call: `NAME script numkeys key ...`, when `numkeys` is not 0.
    Script,
}

/// The key that decides where `cmd` goes, for the commands the direct path takes.
fn single_key(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter();
    let Some(Arg::Simple(name)) = args.next() else {
        return None;
    };
    let mut upper = [0u8; 16];
    let upper = upper.get_mut(..name.len())?;
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    let at = match &*upper {
        // strings
        b"GET" | b"SET" | b"SETNX" | b"SETEX" | b"PSETEX" | b"GETSET" | b"GETDEL" | b"GETEX"
        | b"APPEND" | b"STRLEN" | b"INCR" | b"INCRBY" | b"INCRBYFLOAT" | b"DECR" | b"DECRBY"
        | b"SETRANGE" | b"GETRANGE" | b"SETBIT" | b"GETBIT" | b"BITCOUNT" | b"BITPOS"
        // several keys: whole to the first key's slot
        | b"MGET" | b"MSET" | b"MSETNX" | b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH"
        // keys
        | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"TTL" | b"PTTL" | b"PERSIST"
        | b"TYPE"
        // hashes
        | b"HGET" | b"HSET" | b"HSETNX" | b"HMGET" | b"HMSET" | b"HDEL" | b"HEXISTS"
        | b"HGETALL" | b"HKEYS" | b"HVALS" | b"HLEN" | b"HINCRBY" | b"HINCRBYFLOAT"
        | b"HSTRLEN"
        // lists
        | b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LRANGE"
        | b"LLEN" | b"LINDEX" | b"LSET" | b"LREM" | b"LTRIM" | b"LINSERT" | b"LPOS"
        // sets
        | b"SADD" | b"SREM" | b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD"
        | b"SPOP" | b"SRANDMEMBER"
        // sorted sets
        | b"ZADD" | b"ZREM" | b"ZSCORE" | b"ZMSCORE" | b"ZINCRBY" | b"ZCARD" | b"ZCOUNT"
        | b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGE" | b"ZREVRANGEBYSCORE" | b"ZRANK"
        | b"ZREVRANK" | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYRANK" | b"ZPOPMIN" | b"ZPOPMAX"
        // HyperLogLog, streams
        | b"PFADD" | b"PFCOUNT" | b"XADD" | b"XLEN" | b"XRANGE" | b"XREVRANGE" | b"XDEL"
        | b"XTRIM" | b"XACK" => KeyAt::First,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            KeyAt::Script
        }
        _ => return None,
    };
    let key = match at {
        KeyAt::First => args.next(),
        KeyAt::Script => {
            let _script = args.next();
            let Some(Arg::Simple(keys)) = args.next() else {
                return None;
            };
            if matches!(keys, b"0") {
                return None;
            }
            args.next()
        }
    };
    match key {
        Some(Arg::Simple(key)) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(args: &[&str]) -> Option<String> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        single_key(&cmd).map(|key| String::from_utf8_lossy(key).into_owned())
    }

    #[test]
    fn data_commands_on_one_key_go_direct() {
        assert_eq!(key_of(&["INCRBY", "hits", "1"]).as_deref(), Some("hits"));
        assert_eq!(key_of(&["get", "a"]).as_deref(), Some("a"), "any case");
        assert_eq!(key_of(&["MSET", "a", "1", "b", "2"]).as_deref(), Some("a"));
        assert_eq!(
            key_of(&["EVALSHA", "abc", "2", "k1", "k2", "x"]).as_deref(),
            Some("k1")
        );
    }

    #[test]
    fn everything_else_goes_through_redis_rs() {
        for args in [
            &["PING"][..],
            &["GET"],
            &["EVAL", "return 1", "0"],
            &["BLPOP", "q", "0"],
            &["WATCH", "a"],
            &["CLUSTER", "SLOTS"],
            &["OBJECT", "ENCODING", "a"],
            &["AVERYLONGCOMMANDNAMEINDEED", "a"],
        ] {
            assert_eq!(key_of(args), None, "{args:?}");
        }
    }
}
