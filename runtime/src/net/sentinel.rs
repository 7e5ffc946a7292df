//! Following a master through Redis Sentinel: which server the sentinels name as the master of a
//! pool's `master_name`, checked with `ROLE` on every new connection, and their `+switch-master`
//! announcements, so that a pool drops its connections to a master that was replaced.
//!
//! Every dial asks the sentinels afresh, one after another, starting with the one that answered
//! last; a sentinel that is down, slow (`dial_timeout`) or answers with an error is skipped. A
//! failover is thus noticed three ways: the old master's connections break (a killed master),
//! it answers writes with `READONLY` (a master demoted while it runs), or a sentinel announces
//! the switch on the channel that one watcher task subscribes to.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::{RedisResult, Value};
use tokio::sync::watch;

use super::dial::Connector;
use super::wire::Wire;
use crate::config::Address;
use crate::retry::io_error;

/// The channel on which sentinels announce a new master: `name old-ip old-port new-ip new-port`.
const SWITCH_MASTER: &str = "+switch-master";

/// How long the watcher waits after every sentinel failed it, before it tries them again.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// The sentinels of one pool.
pub(crate) struct Sentinels {
    /// "pool `name`", for messages.
    owner: Arc<str>,
    master_name: Arc<str>,
    /// One connector per sentinel, with the sentinels' own credentials and TLS.
    sentinels: Vec<(Address, Connector)>,
    /// The sentinel that answered last, asked first.
    first: AtomicUsize,
    /// The master the sentinels named last.
    master: ArcSwapOption<Address>,
    dial_timeout: Duration,
}

impl Sentinels {
    /// The sentinels at `sentinels` (each with its connector) for `owner`'s master
    /// `master_name`.
    pub(crate) fn new(
        owner: Arc<str>,
        master_name: &str,
        sentinels: Vec<(Address, Connector)>,
        dial_timeout: Duration,
    ) -> Self {
        Self {
            owner,
            master_name: master_name.into(),
            sentinels,
            first: AtomicUsize::new(0),
            master: ArcSwapOption::empty(),
            dial_timeout,
        }
    }

    /// The master the sentinels named last, if they were asked yet.
    pub(crate) fn named(&self) -> Option<Arc<Address>> {
        self.master.load_full()
    }

    /// Asks the sentinels, one after another, for the master's address. Fails only when none of
    /// them names it, with what each one did.
    pub(crate) async fn master(&self) -> RedisResult<Address> {
        let count = self.sentinels.len();
        let first = self.first.load(Ordering::Relaxed);
        let mut failures = Vec::with_capacity(count);
        for step in 0..count {
            let index = (first + step) % count;
            let Some((address, connector)) = self.sentinels.get(index) else {
                continue;
            };
            match self.ask(address, connector).await {
                Ok(master) => {
                    self.first.store(index, Ordering::Relaxed);
                    self.master.store(Some(Arc::new(master.clone())));
                    return Ok(master);
                }
                Err(why) if why.starts_with(&address.to_string()) => failures.push(why),
                Err(why) => failures.push(format!("{address}: {why}")),
            }
        }
        Err(io_error(
            io::ErrorKind::NotConnected,
            format!(
                "{}: no sentinel named the master `{}` ({}); check the sentinels' `addresses` \
                 and that they run, the credentials and `tls` they need, and that `master_name` \
                 is the name in their `sentinel monitor` line",
                self.owner,
                self.master_name,
                failures.join("; ")
            ),
        ))
    }

    /// One sentinel's answer to `SENTINEL GET-MASTER-ADDR-BY-NAME`, or why there is none.
    async fn ask(&self, address: &Address, connector: &Connector) -> Result<Address, String> {
        let connection = connector.connect_to(address).await.map_err(|error| {
            // The sentinels have credentials of their own.
            without_owner(&error, &self.owner).replace(
                "check `user_name` and `password`",
                "check the `user_name` and `password` inside `sentinel`",
            )
        })?;
        let mut conn = connection.conn.clone();
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&*self.master_name);
        let query = cmd.query_async::<Option<(String, u16)>>(&mut conn);
        match tokio::time::timeout(self.dial_timeout, query).await {
            Ok(Ok(Some((host, port)))) => Ok(Address { host, port }),
            Ok(Ok(None)) => Err(format!(
                "it monitors no master named `{}`",
                self.master_name
            )),
            Ok(Err(error)) => Err(format!("it answered {error}")),
            Err(_) => Err(format!(
                "no answer within dial_timeout ({:?})",
                self.dial_timeout
            )),
        }
    }

    /// Fails unless the server at `address`, just dialed, says it is a master: the sentinels
    /// may have named a server that was demoted since, or that is still being promoted.
    pub(crate) async fn check_role(&self, conn: &mut Wire, address: &Address) -> RedisResult<()> {
        let role: Value = redis::cmd("ROLE").query_async(conn).await?;
        let role = match &role {
            Value::Array(items) => match items.first() {
                Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                Some(Value::SimpleString(text)) => text.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        if role == "master" {
            return Ok(());
        }
        // Forget it, so that the next dial asks again rather than trusting this answer.
        self.master.store(None);
        // A network-kind error: a failover in progress, which the retry rules wait out.
        Err(io_error(
            io::ErrorKind::ConnectionRefused,
            format!(
                "{}: the sentinels named {address} as the master `{}`, but it says it is a {}; \
                 a failover may be in progress",
                self.owner,
                self.master_name,
                if role.is_empty() {
                    "server of unknown role"
                } else {
                    &role
                }
            ),
        ))
    }

    /// Subscribes to `+switch-master` on one sentinel after another for as long as `closing`
    /// stays false, and calls `switched` with the new master whenever the sentinels name another
    /// one: announced on the channel, or found on (re)subscribing, which may have missed an
    /// announcement.
    pub(crate) async fn watch(
        self: Arc<Self>,
        switched: impl Fn(&Address) + Send + 'static,
        mut closing: watch::Receiver<bool>,
    ) {
        let mut index = 0;
        loop {
            let mut failed = 0;
            while failed < self.sentinels.len() {
                if *closing.borrow() {
                    return;
                }
                let Some((address, connector)) = self.sentinels.get(index % self.sentinels.len())
                else {
                    return;
                };
                index += 1;
                let subscribed = async {
                    let mut pubsub = connector.pubsub().await?;
                    pubsub.subscribe(SWITCH_MASTER).await?;
                    RedisResult::Ok(pubsub)
                };
                let pubsub = tokio::select! {
                    pubsub = subscribed => pubsub,
                    _ = closing.wait_for(|closed| *closed) => return,
                };
                let pubsub = match pubsub {
                    Ok(pubsub) => pubsub,
                    Err(error) => {
                        tracing::debug!(
                            owner = %self.owner,
                            sentinel = %address,
                            %error,
                            "cannot subscribe to +switch-master"
                        );
                        failed += 1;
                        continue;
                    }
                };
                failed = 0;
                tracing::debug!(owner = %self.owner, sentinel = %address, "watching +switch-master");
                // Anything missed while no subscription was open.
                let before = self.named();
                if let Ok(now) = self.master().await
                    && before.as_deref().is_some_and(|before| *before != now)
                {
                    switched(&now);
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = closing.wait_for(|closed| *closed) => return,
                    };
                    let Some(message) = message else {
                        tracing::debug!(
                            owner = %self.owner,
                            sentinel = %address,
                            "sentinel subscription ended; moving to the next sentinel"
                        );
                        break;
                    };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(new) = switch_of(&payload, &self.master_name) {
                        tracing::info!(
                            owner = %self.owner,
                            master = %self.master_name,
                            %new,
                            "the sentinels switched the master"
                        );
                        self.master.store(Some(Arc::new(new.clone())));
                        switched(&new);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_RETRY) => {}
                _ = closing.wait_for(|closed| *closed) => return,
            }
        }
    }
}

/// The new master in a `+switch-master` payload about `master_name`.
fn switch_of(payload: &str, master_name: &str) -> Option<Address> {
    let mut fields = payload.split_ascii_whitespace();
    if fields.next()? != master_name {
        return None;
    }
    let (_old_host, _old_port) = (fields.next()?, fields.next()?);
    let host = fields.next()?.to_owned();
    let port = fields.next()?.parse().ok()?;
    Some(Address { host, port })
}

/// An error's text without the "pool `name`: " its connector put in front.
fn without_owner(error: &redis::RedisError, owner: &str) -> String {
    let text = error
        .detail()
        .map_or_else(|| error.to_string(), str::to_owned);
    text.strip_prefix(&format!("{owner}: "))
        .map(str::to_owned)
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_announcements_name_the_new_master() {
        let new = switch_of("mymaster 127.0.0.1 6379 10.0.0.7 6380", "mymaster");
        assert_eq!(
            new,
            Some(Address {
                host: "10.0.0.7".into(),
                port: 6380
            })
        );
        assert_eq!(
            switch_of("other 127.0.0.1 6379 10.0.0.7 6380", "mymaster"),
            None
        );
        assert_eq!(switch_of("mymaster 127.0.0.1 6379", "mymaster"), None);
        assert_eq!(switch_of("mymaster 1 2 host notaport", "mymaster"), None);
    }
}
