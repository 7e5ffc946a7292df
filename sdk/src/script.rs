//! [`RedisScript`]: a Lua script that `#[redis_script("path")]` read from a file when the plugin
//! crate compiled, and that runs on any handle the plugin was given.

use std::fmt;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs};

/// A Lua script, read from a file of the plugin crate at compile time and identified by its
/// SHA1, as Redis names scripts.
///
/// Declare it on a plugin field; the path is relative to the directory of the crate's
/// `Cargo.toml`, and changing the file rebuilds the crate. A file that is missing or not UTF-8
/// is a compile error.
///
/// ```
/// use redplug::prelude::*;
///
/// #[derive(Plugin)]
/// struct Quota {
///     #[redis_pool("quotas")]
///     redis: RedisPool,
///     // scripts/spend.lua: return redis.call('DECRBY', KEYS[1], ARGV[1])
///     #[redis_script("scripts/spend.lua")]
///     spend: RedisScript,
/// }
///
/// impl Middleware for Quota {
///     async fn on_request(&self, _request: &mut Request) -> Result<Flow, PluginError> {
///         let left: i64 = self
///             .spend
///             .key("quota:alice")
///             .arg(1)
///             .invoke(&mut self.redis.clone())
///             .await?;
///         if left < 0 {
///             let mut refusal = Response::new("quota used up\n".into());
///             *refusal.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
///             return Ok(Flow::Respond(refusal));
///         }
///         Ok(Flow::Continue)
///     }
/// }
///
/// assert_eq!(Quota::SCRIPTS[0].field, "spend");
/// assert_eq!(Quota::SCRIPTS[0].script.path(), "scripts/spend.lua");
/// ```
///
/// [`invoke`](ScriptCall::invoke) sends `EVALSHA`, so a request sends the hash, not the
/// source. A server that does not know the script (it restarted, failed over to a replica, or
/// ran `SCRIPT FLUSH`) answers `NOSCRIPT`; the call then sends the source with `EVAL`, which
/// runs the script once and leaves it in that server's script cache, so the next `EVALSHA`
/// finds it. (`EVAL` goes to the same node as `EVALSHA`, by the first key, which a
/// `SCRIPT LOAD` on a cluster would not. Redis 8 may later evict scripts that arrived by
/// `EVAL` when more than 500 of them pile up; the next `NOSCRIPT` is handled the same way.) The
/// runtime also loads every plugin's scripts with `SCRIPT LOAD` into the servers of its pools
/// and clusters at startup, so the first request does not pay for it.
///
/// It runs on any connection: a [`RedisPool`](crate::RedisPool) (with the pool's retries), a
/// [`RedisCluster`](crate::RedisCluster) (on the master that owns the script's first key; a
/// script without keys runs on any master), or a connection checked out with `checkout()`.
/// On a cluster every key a script touches must be in one slot: give related keys the same
/// `{hashtag}`.
#[derive(Clone, Copy)]
pub struct RedisScript {
    path: &'static str,
    source: &'static str,
    sha1: &'static str,
}

impl RedisScript {
    /// The script of a file, with its SHA1 computed by the derive. Used by generated code.
    #[doc(hidden)]
    pub const fn __from_file(path: &'static str, source: &'static str, sha1: &'static str) -> Self {
        Self { path, source, sha1 }
    }

    /// The file's path as written in `#[redis_script("...")]`, relative to the plugin crate's
    /// `Cargo.toml`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The Lua source.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The SHA1 of the source in 40 lowercase hex digits: the name `EVALSHA` and
    /// `SCRIPT EXISTS` use.
    pub fn sha1(&self) -> &'static str {
        self.sha1
    }

    /// A call with `key` as its first key (`KEYS[1]`). On a cluster the first key decides the
    /// node the script runs on.
    pub fn key<K: ToRedisArgs>(&self, key: K) -> ScriptCall {
        let mut call = self.call();
        call.key(key);
        call
    }

    /// A call with `arg` as its first argument (`ARGV[1]`) and no keys.
    pub fn arg<A: ToRedisArgs>(&self, arg: A) -> ScriptCall {
        let mut call = self.call();
        call.arg(arg);
        call
    }

    /// A call without keys or arguments yet, to add them in a loop.
    pub fn call(&self) -> ScriptCall {
        ScriptCall {
            script: *self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Runs the script without keys or arguments.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        connection: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        self.call().invoke(connection).await
    }

    /// `SCRIPT LOAD <source>`: the command that puts the script into one server's cache
    /// without running it. It answers the SHA1, or the server's error when the Lua does not
    /// compile.
    pub fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.source);
        cmd
    }
}

impl fmt::Debug for RedisScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisScript")
            .field("path", &self.path)
            .field("sha1", &self.sha1)
            .finish_non_exhaustive()
    }
}

/// One call of a [`RedisScript`] being put together: its keys (`KEYS`) and arguments (`ARGV`).
/// Build it with [`RedisScript::key`] or [`RedisScript::arg`], then [`invoke`](Self::invoke).
pub struct ScriptCall {
    script: RedisScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl ScriptCall {
    /// Adds a key: the next entry of `KEYS`.
    pub fn key<K: ToRedisArgs>(&mut self, key: K) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds an argument: the next entry of `ARGV`.
    pub fn arg<A: ToRedisArgs>(&mut self, arg: A) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Runs the script on `connection` with `EVALSHA`, and with `EVAL` when the server answers
    /// `NOSCRIPT` (see [`RedisScript`]). Errors the script raises come back as Redis errors.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        connection: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self
            .command("EVALSHA", self.script.sha1)
            .query_async(connection)
            .await
        {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // The script did not run, so running it now runs it once.
                self.command("EVAL", self.script.source)
                    .query_async(connection)
                    .await
            }
            outcome => outcome,
        }
    }

    /// `EVALSHA <sha1> ...` or `EVAL <source> ...` with this call's keys and arguments.
    fn command(&self, name: &str, script: &str) -> Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(script)
            .arg(self.keys.len())
            .arg(self.keys.as_slice())
            .arg(self.args.as_slice());
        cmd
    }
}

impl fmt::Debug for ScriptCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys and arguments may carry user data: counts only.
        f.debug_struct("ScriptCall")
            .field("script", &self.script)
            .field("keys", &self.keys.len())
            .field("args", &self.args.len())
            .finish()
    }
}
