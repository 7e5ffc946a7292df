//! Dialing one Redis connection: TCP, optional TLS, then redis-rs' handshake (`AUTH`,
//! `SELECT`) and our own `CLIENT SETNAME`, all within `dial_timeout`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, RedisResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;

use arc_swap::ArcSwap;

use super::coalesce::{Backlog, Coalescing, Transport};
use super::sentinel::Sentinels;
use super::tls;
use super::wire::{Handoff, Wire};
use crate::config::{Address, ConnectionOptions};
use crate::retry::{RetryPolicy, io_error, is_max_clients};

/// How long [`Connector::refusal`] listens for a server's reason to hang up.
const REFUSAL_WAIT: Duration = Duration::from_millis(250);

/// TCP keepalive on every connection: after this long without traffic the kernel starts
/// probing the peer, every [`KEEPALIVE_INTERVAL`], and ends the connection after
/// [`KEEPALIVE_PROBES`] unanswered probes. A connection whose server's host vanished (a
/// half-open connection) thus ends within about 30 s, even while a blocking command waits on it
/// with no deadline of its own.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// See [`KEEPALIVE_IDLE`].
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_IDLE`].
pub(crate) const KEEPALIVE_PROBES: u32 = 3;
/// How long data we sent may stay unacknowledged before the kernel gives the connection up
/// (`TCP_USER_TIMEOUT`): the same 30 s bound while a command is being written or retransmitted.
pub(crate) const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(30);

/// Everything needed to open one more connection to one server.
#[derive(Clone)]
pub(crate) struct Connector {
    /// The pool or cluster this connector belongs to, for error messages.
    owner: Arc<str>,
    target: Target,
    db: i64,
    /// Credentials and database for the handshake; replaced by [`Connector::set_credentials`],
    /// shared by every clone.
    info: Arc<ArcSwap<RedisConnectionInfo>>,
    client_name: Option<String>,
    dial_timeout: Duration,
    tls: Option<TlsConnector>,
    /// Turns true when the owner shuts down; every connection opened here closes then.
    shutdown: Option<watch::Receiver<bool>>,
    /// How long counted commands may wait without a reply (see [`super::coalesce`]).
    reply_timeout: Option<Duration>,
    /// Spaces out dials after failures; shared by every clone of this connector.
    gate: Arc<DialGate>,
}

/// Where a connector's server is.
#[derive(Clone)]
enum Target {
    /// One fixed address.
    Fixed(Address),
    /// Whichever server the sentinels name as the master, asked on every dial.
    Master(Arc<Sentinels>),
}

/// The handshake's credentials and database.
fn connection_info(
    db: i64,
    user_name: Option<&str>,
    password: Option<&str>,
) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = user_name {
        info = info.set_username(user);
    }
    if let Some(password) = password {
        info = info.set_password(password);
    }
    info
}

impl Connector {
    /// A connector for `address` with the credentials, name and TLS of `options`.
    pub(crate) fn new(
        owner: Arc<str>,
        address: Address,
        db: i64,
        options: &ConnectionOptions,
        tls: Option<TlsConnector>,
    ) -> Self {
        Self::to(owner, Target::Fixed(address), db, options, tls)
    }

    /// A connector for the master that `sentinels` name, asked on every dial and checked with
    /// `ROLE` before use.
    pub(crate) fn to_master(
        owner: Arc<str>,
        sentinels: Arc<Sentinels>,
        db: i64,
        options: &ConnectionOptions,
        tls: Option<TlsConnector>,
    ) -> Self {
        Self::to(owner, Target::Master(sentinels), db, options, tls)
    }

    fn to(
        owner: Arc<str>,
        target: Target,
        db: i64,
        options: &ConnectionOptions,
        tls: Option<TlsConnector>,
    ) -> Self {
        let info = connection_info(
            db,
            options.user_name.as_ref().map(|user| user.expose()),
            options.password.as_ref().map(|password| password.expose()),
        );
        Self {
            owner,
            target,
            db,
            info: Arc::new(ArcSwap::from_pointee(info)),
            client_name: options.client_name.clone(),
            dial_timeout: options.dial_timeout,
            tls,
            shutdown: None,
            reply_timeout: None,
            gate: Arc::new(DialGate::new(options.retry.into())),
        }
    }

    /// Closes every connection this connector opens once `shutdown` turns true, including
    /// those checked out at the time, which their holders would otherwise keep open.
    pub(crate) fn closing_on(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Ends a connection opened here, failing the commands counted in its
    /// [`Connection::backlog`], when the server sends nothing for `timeout` while any of them
    /// waits.
    pub(crate) fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = Some(timeout);
        self
    }

    /// The sentinels this connector follows the master through, if it does.
    pub(crate) fn sentinels(&self) -> Option<&Arc<Sentinels>> {
        match &self.target {
            Target::Fixed(_) => None,
            Target::Master(sentinels) => Some(sentinels),
        }
    }

    /// Makes the connections opened from now on authenticate with `user_name` and `password`
    /// (on every clone of this connector); open connections keep the session they have. The
    /// next dial goes out at once, even if the old credentials were just refused.
    pub(crate) fn set_credentials(&self, user_name: Option<&str>, password: Option<&str>) {
        self.info
            .store(Arc::new(connection_info(self.db, user_name, password)));
        self.gate.opened();
    }

    /// Opens and sets up one connection, failing after `dial_timeout`.
    ///
    /// After the server turned a dial away, the next dial waits out a backoff (see
    /// [`DialGate`]); a call in the meantime fails at once with the last dial's error.
    pub(crate) async fn connect(&self) -> RedisResult<Connection> {
        if let Some(error) = self.gate.refusal() {
            return Err(error);
        }
        let address = match &self.target {
            Target::Fixed(address) => address.clone(),
            Target::Master(sentinels) => sentinels.master().await?,
        };
        self.connect_to(&address).await
    }

    /// [`Connector::connect`] to `address`, with no sentinel asked (which is how sentinels
    /// themselves are dialed).
    pub(crate) async fn connect_to(&self, address: &Address) -> RedisResult<Connection> {
        let mut reached = false;
        let result = self.dial(address, &mut reached).await;
        match &result {
            Ok(_) => self.gate.opened(),
            // Only a server that took the connection and then refused it is spared: a closed
            // port costs it nothing, and a dial that timed out already waited dial_timeout.
            Err(error) if reached && !error.is_timeout() => self.gate.turned_away(error),
            Err(_) => {}
        }
        result
    }

    /// One dial; sets `reached` once the TCP connection is up.
    async fn dial(&self, address: &Address, reached: &mut bool) -> RedisResult<Connection> {
        let started = Instant::now();
        let dial = self.connect_unbounded(address, reached);
        match tokio::time::timeout(self.dial_timeout, dial).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => {
                let hung_up = error.is_connection_dropped()
                    && !error.is_connection_refusal()
                    && !error.is_timeout();
                let reason = if hung_up {
                    let budget = self.dial_timeout.saturating_sub(started.elapsed());
                    self.refusal(address, budget).await
                } else {
                    None
                };
                Err(self.describe(address, error, reason))
            }
            Err(_) => Err(io_error(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: connecting to {address} took longer than dial_timeout ({:?}); check \
                     that the server is up and reachable, or raise `dial_timeout`",
                    self.owner, self.dial_timeout
                ),
            )),
        }
    }

    async fn connect_unbounded(
        &self,
        address: &Address,
        reached: &mut bool,
    ) -> RedisResult<Connection> {
        let tcp = TcpStream::connect((address.host.as_str(), address.port)).await?;
        *reached = true;
        keep_alive(&tcp)?;
        // Set for the handshake; from then on the stream decides per batch (`crate::coalesce`).
        tcp.set_nodelay(true)?;
        let backlog = Arc::new(Backlog::default());
        let (mut conn, driver) = match &self.tls {
            Some(connector) => {
                let name = tls::server_name(&address.host)
                    .map_err(|message| io_error(io::ErrorKind::InvalidInput, message))?;
                let stream = connector.connect(name, tcp).await?;
                self.handshake(stream, backlog.clone()).await?
            }
            None => self.handshake(tcp, backlog.clone()).await?,
        };
        let ended = Arc::new(AtomicBool::new(false));
        let marker = Ended(ended.clone());
        let driver = tokio::spawn(async move {
            let _marker = marker;
            driver.await;
        });
        let abort = driver.abort_handle();
        if let Some(mut shutdown) = self.shutdown.clone() {
            // A task of its own watches for the shutdown, rather than the driver polling the
            // watch each time it wakes: the driver wakes for every batch of replies.
            let on_shutdown = abort.clone();
            tokio::spawn(async move {
                let closed = async {
                    // A dropped sender means the owner is gone without shutting down: keep
                    // serving whoever still holds the connection.
                    if shutdown.wait_for(|closed| *closed).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = driver => {}
                    () = closed => on_shutdown.abort(),
                }
            });
        }
        let driver = DriverGuard(abort);
        if let Target::Master(sentinels) = &self.target {
            sentinels.check_role(&mut conn, address).await?;
        }
        if let Some(name) = &self.client_name {
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .exec_async(&mut conn)
                .await?;
        }
        Ok(Connection {
            conn,
            address: address.clone(),
            ended,
            backlog,
            _driver: Arc::new(driver),
        })
    }

    /// A pub/sub connection to this connector's fixed address (a sentinel), within
    /// `dial_timeout`.
    pub(crate) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        let Target::Fixed(address) = &self.target else {
            return Err(io_error(
                io::ErrorKind::InvalidInput,
                format!("{}: pub/sub goes to a fixed address", self.owner),
            ));
        };
        let open = async {
            let tcp = TcpStream::connect((address.host.as_str(), address.port)).await?;
            keep_alive(&tcp)?;
            let stream: Box<dyn Stream> = match &self.tls {
                Some(connector) => {
                    let name = tls::server_name(&address.host)
                        .map_err(|message| io_error(io::ErrorKind::InvalidInput, message))?;
                    Box::new(connector.connect(name, tcp).await?)
                }
                None => Box::new(tcp),
            };
            let info = self.info.load_full();
            redis::aio::PubSub::new(&info, stream).await
        };
        match tokio::time::timeout(self.dial_timeout, open).await {
            Ok(result) => result.map_err(|error| self.describe(address, error, None)),
            Err(_) => Err(io_error(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: subscribing at {address} took longer than dial_timeout ({:?})",
                    self.owner, self.dial_timeout
                ),
            )),
        }
    }

    /// redis-rs' handshake (`HELLO`/`AUTH`, `SELECT`) over `stream`, which is then driven by a
    /// [`Wire`] and from then on batches its writes (see [`Coalescing`]). Returns the connection
    /// and its socket's driver.
    async fn handshake<S>(
        &self,
        stream: S,
        backlog: Arc<Backlog>,
    ) -> RedisResult<(Wire, BoxFuture<'static, ()>)>
    where
        S: Transport + Send + 'static,
    {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let info = self.info.load_full();
        let (lent, back) = Handoff::lend(stream);
        let (setup, setup_driver) =
            MultiplexedConnection::new_with_config(&info, lent, config).await?;
        // redis-rs has read every reply of its setup; dropping its connection returns the
        // socket with nothing left unread.
        drop((setup, setup_driver));
        let stream = Handoff::take_back(&back).ok_or_else(|| {
            io_error(
                io::ErrorKind::Other,
                format!("{}: the connection's setup kept its socket", self.owner),
            )
        })?;
        // No per-command timeout: the shared lane's commands have the stream's reply deadline,
        // blocking commands on an exclusive connection wait as long as they must.
        let stream = Coalescing::new(stream, backlog, self.reply_timeout);
        let (wire, driver) = Wire::new(stream, info.db());
        Ok((wire, Box::pin(driver)))
    }

    /// What a server that hung up on a new connection said first. A server at its
    /// `maxclients` limit (or in protected mode) writes its reason and closes, and the reply
    /// to our handshake, already sent, is then a bare reset. One more connection that only
    /// listens reads the reason. Not for TLS, where the reason would come inside the session.
    async fn refusal(&self, address: &Address, budget: Duration) -> Option<String> {
        if self.tls.is_some() {
            return None;
        }
        let listen = async {
            let address = (address.host.as_str(), address.port);
            let mut tcp = TcpStream::connect(address).await.ok()?;
            let mut reply = [0u8; 256];
            let read = tcp.read(&mut reply).await.ok()?;
            let reply = std::str::from_utf8(&reply[..read]).ok()?;
            reply
                .strip_prefix('-')
                .map(|line| line.trim_end().to_owned())
        };
        tokio::time::timeout(budget.min(REFUSAL_WAIT), listen)
            .await
            .ok()
            .flatten()
    }

    fn describe(
        &self,
        address: &Address,
        error: RedisError,
        refusal: Option<String>,
    ) -> RedisError {
        let kind = match error.kind() {
            redis::ErrorKind::Io => io_kind(&error),
            _ => io::ErrorKind::Other,
        };
        let max_clients = "; the server is at its `maxclients` limit: close clients elsewhere, \
                           lower `pool_size`, or raise maxclients on the server";
        if let Some(reason) = refusal {
            // Still a network failure, so it is retried as one.
            let hint = if reason.contains("max number of clients") {
                max_clients
            } else {
                ""
            };
            return io_error(
                kind,
                format!(
                    "{}: {} refused the connection: {reason} ({error}){hint}",
                    self.owner, address
                ),
            );
        }
        if is_auth_failure(&error) {
            // redis-rs' own text ("Password authentication failed - AuthenticationFailed")
            // would only repeat what the kind already says.
            let said = error
                .code()
                .map(|code| format!(" ({code})"))
                .unwrap_or_default();
            return RedisError::from((
                error.kind(),
                "connection setup failed",
                format!(
                    "{}: {} rejected the credentials{said}; check `user_name` and `password`",
                    self.owner, address
                ),
            ));
        }
        let hint = if error.is_connection_refusal() {
            "; is the server running and is the address right?"
        } else if is_max_clients(&error) {
            max_clients
        } else {
            ""
        };
        if kind == io::ErrorKind::Other && !error.is_io_error() {
            // Not a network failure: keep the server's own error (and its kind) so callers can
            // tell an ACL refusal from a dead server.
            return RedisError::from((
                error.kind(),
                "connection setup failed",
                format!(
                    "{}: {} refused the connection: {error}{hint}",
                    self.owner, address
                ),
            ));
        }
        io_error(
            kind,
            format!(
                "{}: cannot connect to {}: {error}{hint}",
                self.owner, address
            ),
        )
    }
}

/// Makes the kernel notice a peer that went away without closing: keepalive probes while the
/// connection is quiet, and a limit on how long sent data may stay unacknowledged.
fn keep_alive(tcp: &TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT))?;
    Ok(())
}

/// Spaces out the dials of one pool (or one cluster node) to a server that accepts connections
/// and then turns them away: wrong credentials, a full server (`maxclients`), protected mode.
/// Each such dial costs the server an accept and a handshake, and callers in a loop would
/// otherwise make thousands a second.
///
/// After `n` such dials in a row, no dial starts for a jittered backoff computed like a
/// retry's (`min_retry_backoff + random[0, min_retry_backoff·2ⁿ)`, at most `max_retry_backoff`).
/// Calls in that window fail at once with the last dial's error. A call after the window dials
/// again, and a success resets the count, so a fixed server is found within
/// `max_retry_backoff`. Dials to a closed port (refused at once, at no cost to the server) and
/// dials that time out (slow by themselves) are not spaced out: the first call after such a
/// server is back connects.
struct DialGate {
    policy: RetryPolicy,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Dials that failed since the last success.
    failures: u32,
    /// No dial starts before this instant.
    closed_until: Option<Instant>,
    /// What the last failed dial said, handed to calls in the window.
    last_error: Option<RedisError>,
}

impl DialGate {
    fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(GateState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Plain counters and a cloned error: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error a call gets instead of dialing while the gate is closed.
    fn refusal(&self) -> Option<RedisError> {
        let state = self.state();
        let until = state.closed_until?;
        until.checked_duration_since(Instant::now())?;
        let error = state.last_error.as_ref()?;
        let note = format!(
            "not dialed again yet: after the server turned a dial away the pool waits before \
             the next, up to {:?}",
            self.policy.max_backoff
        );
        Some(with_note(error, &note))
    }

    /// A dial succeeded: the next failure starts the backoff from the beginning.
    fn opened(&self) {
        *self.state() = GateState::default();
    }

    /// The server took a dial and refused it.
    fn turned_away(&self, error: &RedisError) {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let now = Instant::now();
        state.closed_until = Some(now + self.policy.backoff(state.failures));
        state.last_error = Some(error.clone());
    }
}

/// `error` with `note` appended to its message, keeping its kind (and so whether it is
/// retried).
fn with_note(error: &RedisError, note: &str) -> RedisError {
    if error.is_io_error() {
        return io_error(io_kind(error), format!("{error} ({note})"));
    }
    let detail = error
        .detail()
        .map_or_else(|| error.to_string(), str::to_owned);
    RedisError::from((
        error.kind(),
        "connection setup failed",
        format!("{detail} ({note})"),
    ))
}

fn io_kind(error: &RedisError) -> io::ErrorKind {
    if error.is_timeout() {
        io::ErrorKind::TimedOut
    } else if error.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if error.is_connection_dropped() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    }
}

/// True when the server rejected our credentials.
pub(crate) fn is_auth_failure(error: &RedisError) -> bool {
    if error.kind() == redis::ErrorKind::AuthenticationFailed {
        return true;
    }
    matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || error.to_string().contains("WRONGPASS")
}

/// A byte stream a pub/sub connection runs on: TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// One open connection and the task that drives its socket. Dropping the last clone stops the
/// task and closes the socket.
#[derive(Clone)]
pub(crate) struct Connection {
    /// The shared connection; clones share the socket.
    pub conn: Wire,
    /// The server it reaches.
    address: Address,
    /// Set when the socket's driver task ends. Cheaper to read on every command than the
    /// task's own state, which the driver rewrites on every wake-up.
    ended: Arc<AtomicBool>,
    /// The commands counted on this connection, shared with its socket.
    backlog: Arc<Backlog>,
    _driver: Arc<DriverGuard>,
}

impl Connection {
    /// The server this connection reaches.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// True once the socket's driver task ended: the server closed the connection or it broke.
    pub(crate) fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The commands counted on this connection. Counted commands have the reply deadline (see
    /// [`Connector::reply_timeout`]); the shared lane counts its commands, exclusive users do
    /// not.
    pub(crate) fn backlog(&self) -> &Backlog {
        &self.backlog
    }
}

/// Marks its connection closed when the driver task ends, however it ends.
struct Ended(Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

struct DriverGuard(AbortHandle);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection asks the kernel to notice a peer that went silent, so that a blocking
    /// command with no timeout of its own cannot wait on a dead host forever.
    #[tokio::test]
    async fn sockets_get_keepalive_and_a_limit_on_unacknowledged_data() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        keep_alive(&tcp).unwrap();
        let socket = socket2::SockRef::from(&tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(UNACKNOWLEDGED_LIMIT)
        );
    }
}
