//! How redis-rs' cluster client reaches a node: through redplug's own [`Connector`], so cluster
//! connections get exactly what pool connections get (our rustls configuration with every `tls`
//! option, ACL credentials, `CLIENT SETNAME`, `dial_timeout`).
//!
//! redis-rs builds node connections through the [`Connect`] trait, whose constructor is a
//! static function that only receives the node's connection info. To tell it which cluster (and
//! so which settings) a connection is for, each [`Dial`] is registered under a token that we pass
//! to redis-rs as the cluster's database number: redis-rs copies it into every node's connection
//! info and uses it for nothing else (it is only read by the handshake, which we replace).
//! Redis Cluster has no databases besides 0, so the token never reaches a server.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_async::Connect;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, Value,
};
use tokio_rustls::TlsConnector;

use crate::config::{Address, ConnectionOptions};
use crate::net::dial::{Connection, Connector};
use crate::net::wire::Wire;
use crate::retry::io_error;
use crate::telemetry::Redirects;

/// Everything needed to open a connection to any node of one cluster.
pub(crate) struct Dial {
    owner: Arc<str>,
    options: ConnectionOptions,
    tls: Option<TlsConnector>,
    /// How long the commands on a connection made with this dial may wait without a reply
    /// before the connection is closed (the stream's reply deadline, see
    /// [`crate::net::coalesce`]); `None` for exclusive connections, which may run blocking
    /// commands.
    response_timeout: Option<Duration>,
    /// The last failure per address, so a failed startup can say what happened at each node.
    failures: Mutex<BTreeMap<String, String>>,
    /// Counts the redirects that the node connections made with this dial receive.
    redirects: Redirects,
}

impl Dial {
    /// A dial for the cluster `owner` (e.g. "cluster `sessions`").
    pub(crate) fn new(
        owner: Arc<str>,
        options: &ConnectionOptions,
        tls: Option<TlsConnector>,
        response_timeout: Option<Duration>,
        redirects: Redirects,
    ) -> Self {
        Self {
            owner,
            options: options.clone(),
            tls,
            response_timeout,
            failures: Mutex::new(BTreeMap::new()),
            redirects,
        }
    }

    /// A connector to one node, for connections outside redis-rs (node handles, topology).
    pub(crate) fn connector(&self, address: Address) -> Connector {
        Connector::new(
            self.owner.clone(),
            address,
            0,
            &self.options,
            self.tls.clone(),
        )
    }

    /// Opens one node connection within `dial_timeout`, remembering why it failed if it did.
    async fn connect(&self, address: Address) -> RedisResult<NodeConn> {
        let key = address.to_string();
        let mut connector = self.connector(address.clone());
        if let Some(timeout) = self.response_timeout {
            // One deadline per connection, renewed by every reply, rather than a timer armed
            // and cleared for every command.
            connector = connector.reply_timeout(timeout);
        }
        match connector.connect().await {
            Ok(connection) => {
                self.failures().remove(&key);
                Ok(NodeConn {
                    conn: connection.conn.clone(),
                    node: Arc::new(Node {
                        connection,
                        owner: self.owner.clone(),
                        address,
                        response_timeout: self.response_timeout,
                        redirects: self.redirects.clone(),
                    }),
                })
            }
            Err(error) => {
                // The connector names the cluster; the startup error already does.
                let why = error
                    .detail()
                    .map_or_else(|| error.to_string(), str::to_owned);
                let why = match why.strip_prefix(&format!("{}: ", self.owner)) {
                    Some(rest) => rest.to_owned(),
                    None => why,
                };
                self.failures().insert(key, why);
                Err(error)
            }
        }
    }

    /// Why the last attempt to reach `address` failed, if it did.
    pub(crate) fn failure(&self, address: &Address) -> Option<String> {
        self.failures().get(&address.to_string()).cloned()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // The map holds plain strings: a panic elsewhere cannot leave it inconsistent.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Registered dials by token. Entries are weak: a dial lives as long as its [`RegisteredDial`].
static DIALS: Mutex<BTreeMap<i64, Weak<Dial>>> = Mutex::new(BTreeMap::new());

/// Tokens start far above any real database number so that one can never pass for the other.
static NEXT_TOKEN: AtomicI64 = AtomicI64::new(1 << 40);

/// Keeps a [`Dial`] reachable for redis-rs under [`RegisteredDial::token`]; unregisters on drop,
/// after which redis-rs can no longer open connections for that cluster.
pub(crate) struct RegisteredDial {
    token: i64,
    dial: Arc<Dial>,
}

impl RegisteredDial {
    pub(crate) fn new(dial: Dial) -> Self {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let dial = Arc::new(dial);
        dials().insert(token, Arc::downgrade(&dial));
        Self { token, dial }
    }

    /// The value to hand redis-rs as the cluster's database number.
    pub(crate) fn token(&self) -> i64 {
        self.token
    }

    pub(crate) fn dial(&self) -> &Arc<Dial> {
        &self.dial
    }
}

impl Drop for RegisteredDial {
    fn drop(&mut self) {
        dials().remove(&self.token);
    }
}

fn dials() -> std::sync::MutexGuard<'static, BTreeMap<i64, Weak<Dial>>> {
    DIALS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lookup(token: i64) -> Option<Arc<Dial>> {
    dials().get(&token).and_then(Weak::upgrade)
}

/// One connection to one cluster node, as redis-rs' cluster client holds it.
#[derive(Clone)]
pub(crate) struct NodeConn {
    conn: Wire,
    /// Behind one pointer, since redis-rs moves and clones a node's connection with each
    /// command it routes.
    node: Arc<Node>,
}

/// The socket under a [`NodeConn`] and which node it reaches.
struct Node {
    /// Its commands are counted in its backlog (for the reply deadline and for batching), and
    /// it keeps the socket's driver task alive as long as any clone is.
    connection: Connection,
    owner: Arc<str>,
    address: Address,
    response_timeout: Option<Duration>,
    redirects: Redirects,
}

impl NodeConn {
    /// `error`, or the timeout it really is when the connection ended at its reply deadline:
    /// the commands on it then only see the socket gone. Like a per-command timeout, it is an
    /// I/O timeout, which is not retried: the node may have run the command.
    fn explain(&self, error: RedisError) -> RedisError {
        if !self.node.connection.backlog().timed_out() {
            return error;
        }
        let node = &self.node;
        io_error(
            io::ErrorKind::TimedOut,
            format!(
                "{}: node {} sent no reply for {:?}, so its connection was closed; the command \
                 may or may not have run",
                node.owner,
                node.address,
                node.response_timeout.unwrap_or_default()
            ),
        )
    }
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let in_flight = self.node.connection.backlog().track();
            let result = self.conn.send_packed_command(cmd).await;
            drop(in_flight);
            self.node.redirects.see_outcome(&result);
            result.map_err(|error| self.explain(error))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let in_flight = self.node.connection.backlog().track();
            let result = self
                .conn
                .send_packed_commands(pipeline, offset, count)
                .await;
            drop(in_flight);
            self.node.redirects.see_replies(&result);
            result.map_err(|error| self.explain(error))
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Connect for NodeConn {
    fn connect_with_config<'a, T>(info: T, _config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let info = info.into_connection_info()?;
            let Some(dial) = lookup(info.redis_settings().db()) else {
                return Err(io_error(
                    io::ErrorKind::NotConnected,
                    "the cluster this connection was for is shut down: the runtime stopped".into(),
                ));
            };
            let address = match info.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    Address {
                        host: host.clone(),
                        port: *port,
                    }
                }
                _ => {
                    return Err(io_error(
                        io::ErrorKind::InvalidInput,
                        format!("{}: cluster nodes are reached over TCP only", dial.owner),
                    ));
                }
            };
            dial.connect(address).await
        })
    }
}
