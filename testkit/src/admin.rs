//! Blocking admin connections the harnesses use to ask their servers how they are.

use std::time::Duration;

use crate::RedisServer;

/// A connection to `server` whose connect, reads and writes each give up after `timeout`.
pub(crate) fn connect(
    server: &RedisServer,
    timeout: Duration,
) -> Result<redis::Connection, String> {
    let con = server
        .client()
        .get_connection_with_timeout(timeout)
        .map_err(|e| format!("{}: {e}", server.addr()))?;
    con.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    con.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(con)
}

/// Runs the command `words` on `con`; the error names the command.
pub(crate) fn query<T: redis::FromRedisValue>(
    con: &mut redis::Connection,
    words: &[&str],
) -> Result<T, String> {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd.query(con)
        .map_err(|e| format!("{}: {e}", words.join(" ")))
}

/// The value of `name:` in an `INFO`-style reply.
pub(crate) fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}
