//! Which master serves which hash slot, and one [`RedisPool`] handle per master: what
//! KrakenD's cluster selector (`cluster_node_for_key`) hands out.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked of a node we know (through a node handle we
//! already have, else over a short-lived connection to a known master or a seed), so that a node
//! announced without an address (`""`, `"?"` or nil: "the address you asked") resolves to the
//! node that answered. It is fetched on first use, again when a node handle or the cluster
//! handle sees an error that means the topology moved (a dead node, `MOVED`, `READONLY`,
//! `CLUSTERDOWN`), and in passing when it is older than [`MAX_AGE`], as go-redis does.
//!
//! Node handles are full pools ([`PoolEngine`]) with the cluster's options, built once per
//! master address and kept while that address serves slots. A handle a plugin still holds after
//! its node stopped being a master keeps working against that address (and gets the server's
//! `MOVED`/`READONLY`), exactly like a go-redis node client would.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use redplug::host::PoolBackend;
use redplug::{PoolStatus, PooledConnection, RedisPool};
use tokio::task::JoinHandle;

use super::dial::Dial;
use crate::config::{Address, ConnectionOptions, PoolConfig, PoolServer};
use crate::net::wire::within;
use crate::pool::maintenance::{self, Limits};
use crate::pool::{PoolEngine, RESPONSE_TIMEOUT};
use crate::retry::io_error;

/// Slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// How long a slot map is trusted without any sign of change before it is fetched again in
/// passing (go-redis reloads its cluster state after the same 10 s).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of the part between the first `{` and
/// the next `}` when that part is not empty, modulo 16384.
pub(crate) fn slot_for_key(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// CRC16 (XMODEM) a byte at a time: every command on a cluster hashes its key.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// CRC16 (XMODEM, polynomial 0x1021) of every byte value.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// Whether `error` suggests the slot map we hold may be out of date.
pub(crate) fn changes_topology(error: &RedisError) -> bool {
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return true;
    }
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
        ) | ErrorKind::ClusterConnectionNotFound
    )
}

/// Slot ranges and their masters at one instant.
#[derive(Debug)]
pub(crate) struct SlotMap {
    /// Sorted by first slot, not overlapping.
    ranges: Vec<SlotRange>,
    fetched: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SlotRange {
    first: u16,
    last: u16,
    master: Address,
}

impl SlotMap {
    /// The master serving `slot`, if any node does.
    pub(crate) fn owner(&self, slot: u16) -> Option<&Address> {
        let after = self.ranges.partition_point(|range| range.first <= slot);
        let range = self.ranges.get(after.checked_sub(1)?)?;
        (slot <= range.last).then_some(&range.master)
    }

    fn masters(&self) -> impl Iterator<Item = &Address> {
        self.ranges.iter().map(|range| &range.master)
    }

    /// Reads a `CLUSTER SLOTS` reply given by the node at `asked`.
    fn parse(reply: Value, asked: &Address) -> RedisResult<Self> {
        let invalid = |what: &str| {
            RedisError::from((
                ErrorKind::Parse,
                "unexpected CLUSTER SLOTS reply",
                format!("{what} (from {asked})"),
            ))
        };
        let Value::Array(entries) = reply else {
            return Err(invalid("not an array"));
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(invalid("an entry is not an array"));
            };
            let mut fields = fields.into_iter();
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(invalid("an entry lacks its slot range or master"));
            };
            let (Ok(first), Ok(last)) = (u16::try_from(first), u16::try_from(last)) else {
                return Err(invalid("a slot number is out of range"));
            };
            let mut node = master.into_iter();
            let host = match node.next() {
                Some(Value::BulkString(bytes)) => String::from_utf8(bytes).ok(),
                Some(Value::SimpleString(text)) => Some(text),
                _ => None,
            };
            let Some(Value::Int(port)) = node.next() else {
                return Err(invalid("a master has no port"));
            };
            let Ok(port) = u16::try_from(port) else {
                return Err(invalid("a port is out of range"));
            };
            // An empty or unknown endpoint means "the node you are talking to".
            let host = match host {
                Some(host) if !host.is_empty() && host != "?" => host,
                _ => asked.host.clone(),
            };
            ranges.push(SlotRange {
                first,
                last,
                master: Address { host, port },
            });
        }
        ranges.sort_by_key(|range| range.first);
        Ok(Self {
            ranges,
            fetched: Instant::now(),
        })
    }
}

/// The master pool of every slot range of one slot map: where the cluster handle sends a
/// command for one key straight to the master's shared lane (see `ClusterEngine::direct`).
pub(crate) struct Routes {
    /// Sorted by first slot, not overlapping: `(first, last, master)`.
    ranges: Vec<(u16, u16, Arc<PoolEngine>)>,
    fetched: Instant,
}

impl Routes {
    fn engine(&self, slot: u16) -> Option<&Arc<PoolEngine>> {
        let after = self.ranges.partition_point(|(first, _, _)| *first <= slot);
        let (_, last, engine) = self.ranges.get(after.checked_sub(1)?)?;
        (slot <= *last).then_some(engine)
    }
}

/// The slot map and the node handles of one cluster.
pub(crate) struct Topology {
    cluster: Arc<str>,
    seeds: Vec<Address>,
    options: ConnectionOptions,
    dial: Arc<Dial>,
    map: ArcSwapOption<SlotMap>,
    /// The master pools of `map`'s ranges, built with it.
    routes: ArcSwapOption<Routes>,
    /// Set by anything that saw a sign of change; shared with every node handle.
    stale: Arc<AtomicBool>,
    /// One fetch at a time; others wait for its result.
    refresh: tokio::sync::Mutex<()>,
    nodes: Mutex<Nodes>,
}

#[derive(Default)]
struct Nodes {
    by_address: HashMap<Address, Node>,
    /// Every node pool ever built, including ones dropped from the map that plugins may still
    /// hold, so shutdown closes them all.
    built: Vec<Weak<PoolEngine>>,
    closed: bool,
}

struct Node {
    engine: Arc<PoolEngine>,
    handle: RedisPool,
    maintenance: JoinHandle<()>,
}

impl Topology {
    pub(crate) fn new(
        cluster: Arc<str>,
        seeds: Vec<Address>,
        options: &ConnectionOptions,
        dial: Arc<Dial>,
    ) -> Self {
        Self {
            cluster,
            seeds,
            options: options.clone(),
            dial,
            map: ArcSwapOption::empty(),
            routes: ArcSwapOption::empty(),
            stale: Arc::new(AtomicBool::new(false)),
            refresh: tokio::sync::Mutex::new(()),
            nodes: Mutex::new(Nodes::default()),
        }
    }

    /// Makes the next lookup fetch the slot map again.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// The pool of the master serving `slot`, when the slot map is fresh: fetched less than
    /// [`MAX_AGE`] ago and with no sign of change since. Never waits.
    pub(crate) fn direct(&self, slot: u16) -> Option<Arc<PoolEngine>> {
        if self.stale.load(Ordering::Acquire) {
            return None;
        }
        let routes = self.routes.load();
        let routes = routes.as_ref()?;
        if routes.fetched.elapsed() >= MAX_AGE {
            return None;
        }
        routes.engine(slot).cloned()
    }

    /// Fetches the slot map again when it is stale, old or missing, unless another task is at
    /// it; a failed fetch leaves the map stale.
    pub(crate) async fn refresh_if_due(&self) {
        let Ok(_turn) = self.refresh.try_lock() else {
            return;
        };
        let fresh = !self.stale.load(Ordering::Acquire)
            && self
                .routes
                .load()
                .as_ref()
                .is_some_and(|routes| routes.fetched.elapsed() < MAX_AGE);
        if !fresh {
            let _ = self.fetch().await;
        }
    }

    /// The pool of the node at `address` (a redirect's target), built on first use.
    pub(crate) fn engine_at(&self, address: &Address) -> RedisResult<Arc<PoolEngine>> {
        self.node_entry(address).map(|(_, engine)| engine)
    }

    /// A handle to the master serving `key`'s slot; `None` when no node serves it.
    pub(crate) async fn node_for_key(&self, key: &[u8]) -> RedisResult<Option<RedisPool>> {
        let map = self.current().await?;
        match map.owner(slot_for_key(key)) {
            Some(master) => self.node(master).map(Some),
            None => Ok(None),
        }
    }

    /// The slot map, fetched first when there is none or it is stale.
    pub(crate) async fn current(&self) -> RedisResult<Arc<SlotMap>> {
        if let Some(map) = self.usable() {
            if map.fetched.elapsed() < MAX_AGE {
                return Ok(map);
            }
            // Merely old: refresh unless someone else is at it, and keep the old map if the
            // refresh fails; an old map is still the best guess.
            let Ok(_turn) = self.refresh.try_lock() else {
                return Ok(map);
            };
            return Ok(self.fetch().await.unwrap_or(map));
        }
        let _turn = self.refresh.lock().await;
        if let Some(map) = self.usable()
            && map.fetched.elapsed() < MAX_AGE
        {
            // Fetched by the task we waited for.
            return Ok(map);
        }
        self.fetch().await
    }

    fn usable(&self) -> Option<Arc<SlotMap>> {
        if self.stale.load(Ordering::Acquire) {
            return None;
        }
        self.map.load_full()
    }

    /// Asks the nodes we know for `CLUSTER SLOTS` until one answers, and installs the answer.
    async fn fetch(&self) -> RedisResult<Arc<SlotMap>> {
        // Cleared first, so that a sign of change seen during the fetch is not lost.
        self.stale.store(false, Ordering::Release);
        match self.ask_around().await {
            Ok(map) => {
                let map = Arc::new(map);
                self.map.store(Some(map.clone()));
                self.forget_former_masters(&map);
                let routes = map
                    .ranges
                    .iter()
                    .map(|range| {
                        let (_, engine) = self.node_entry(&range.master)?;
                        Ok((range.first, range.last, engine))
                    })
                    .collect::<RedisResult<Vec<_>>>()
                    .map(|ranges| {
                        Arc::new(Routes {
                            ranges,
                            fetched: map.fetched,
                        })
                    });
                self.routes.store(routes.ok());
                Ok(map)
            }
            Err(error) => {
                self.mark_stale();
                Err(error)
            }
        }
    }

    async fn ask_around(&self) -> RedisResult<SlotMap> {
        let mut errors: Vec<String> = Vec::new();
        let mut asked: Vec<Address> = Vec::new();
        // Nodes with a handle answer on a connection that is open already.
        let engines: Vec<(Address, Arc<PoolEngine>)> = self
            .lock_nodes()
            .by_address
            .iter()
            .map(|(address, node)| (address.clone(), node.engine.clone()))
            .collect();
        for (address, engine) in engines {
            let answer = engine
                .send_once(&slots_cmd())
                .await
                .and_then(Value::extract_error)
                .and_then(|reply| SlotMap::parse(reply, &address));
            match answer {
                Ok(map) => return Ok(map),
                Err(error) => errors.push(format!("{address}: {error}")),
            }
            asked.push(address);
        }
        // Then the other masters we know of, then the configured seeds.
        let previous = self.map.load_full();
        let mut others: Vec<Address> = previous
            .iter()
            .flat_map(|map| map.masters().cloned().collect::<Vec<_>>())
            .chain(self.seeds.iter().cloned())
            .collect();
        others.retain(|address| !asked.contains(address));
        let mut seen = Vec::new();
        others.retain(|address| {
            let new = !seen.contains(address);
            seen.push(address.clone());
            new
        });
        for address in others {
            match self.ask_once(&address).await {
                Ok(map) => return Ok(map),
                Err(error) => errors.push(format!("{address}: {error}")),
            }
        }
        Err(io_error(
            io::ErrorKind::NotConnected,
            format!(
                "cluster `{}`: no node told which master serves which slot ({})",
                self.cluster,
                errors.join("; ")
            ),
        ))
    }

    /// `CLUSTER SLOTS` over a connection of its own to `address`, closed afterwards.
    async fn ask_once(&self, address: &Address) -> RedisResult<SlotMap> {
        let connection = self.dial.connector(address.clone()).connect().await?;
        let mut conn = connection.conn.clone();
        let reply: Value = within(RESPONSE_TIMEOUT, slots_cmd().query_async(&mut conn)).await?;
        SlotMap::parse(reply, address)
    }

    /// The handle of the master at `address`, built on first use.
    fn node(&self, address: &Address) -> RedisResult<RedisPool> {
        self.node_entry(address).map(|(handle, _)| handle)
    }

    /// The handle and the pool of the master at `address`, built on first use.
    fn node_entry(&self, address: &Address) -> RedisResult<(RedisPool, Arc<PoolEngine>)> {
        let mut nodes = self.lock_nodes();
        if nodes.closed {
            return Err(io_error(
                io::ErrorKind::NotConnected,
                format!(
                    "cluster `{}` is shut down: the runtime stopped",
                    self.cluster
                ),
            ));
        }
        if let Some(node) = nodes.by_address.get(address) {
            return Ok((node.handle.clone(), node.engine.clone()));
        }
        let config = PoolConfig {
            name: format!("{}@{address}", self.cluster),
            server: PoolServer::Address(address.clone()),
            db: 0,
            options: self.options.clone(),
        };
        let engine =
            PoolEngine::new(&config, self.dial.connector(address.clone())).map_err(|message| {
                io_error(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cluster `{}`: cannot build a pool for node {address}: {message}",
                        self.cluster
                    ),
                )
            })?;
        let maintenance = maintenance::spawn(&engine, Limits::new(&self.options));
        let handle = redplug::host::pool(Arc::new(NodeBackend {
            engine: engine.clone(),
            stale: self.stale.clone(),
        }));
        nodes.built.retain(|built| built.strong_count() > 0);
        nodes.built.push(Arc::downgrade(&engine));
        nodes.by_address.insert(
            address.clone(),
            Node {
                engine: engine.clone(),
                handle: handle.clone(),
                maintenance,
            },
        );
        Ok((handle, engine))
    }

    /// Drops our reference to node pools whose address no longer serves slots: a later lookup
    /// that finds the address a master again builds a fresh pool.
    fn forget_former_masters(&self, map: &SlotMap) {
        let mut nodes = self.lock_nodes();
        nodes
            .by_address
            .retain(|address, _| map.masters().any(|m| m == address));
    }

    /// Closes every node pool ever handed out.
    pub(crate) fn close(&self) {
        self.routes.store(None);
        let mut nodes = self.lock_nodes();
        nodes.closed = true;
        for (_, node) in nodes.by_address.drain() {
            node.maintenance.abort();
            node.engine.close();
        }
        for engine in nodes.built.drain(..).filter_map(|weak| weak.upgrade()) {
            engine.close();
        }
    }

    fn lock_nodes(&self) -> MutexGuard<'_, Nodes> {
        // Every update of the map is a single insert or removal: never half done.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn slots_cmd() -> Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    cmd
}

/// A node handle: the node's pool, reporting errors that mean the topology moved.
struct NodeBackend {
    engine: Arc<PoolEngine>,
    stale: Arc<AtomicBool>,
}

impl NodeBackend {
    /// Marks the topology stale when a reply says it moved. Server errors arrive either as an
    /// `Err` or, for replies the caller converts itself, as a [`Value::ServerError`].
    fn note<T: Reply>(&self, result: &RedisResult<T>) {
        let moved = match result {
            Err(error) => changes_topology(error),
            Ok(reply) => reply.server_error().is_some_and(|e| changes_topology(&e)),
        };
        if moved {
            self.stale.store(true, Ordering::Release);
        }
    }
}

/// A reply that may carry a server error, which redis-rs hands back as a value rather than as
/// an `Err` (the caller's `query_async` converts it).
pub(crate) trait Reply {
    /// The first server error in the reply, if any.
    fn server_error(&self) -> Option<RedisError>;
}

impl Reply for Value {
    fn server_error(&self) -> Option<RedisError> {
        match self {
            Value::ServerError(_) => self.clone().extract_error().err(),
            _ => None,
        }
    }
}

impl Reply for Vec<Value> {
    fn server_error(&self) -> Option<RedisError> {
        self.iter().find_map(Reply::server_error)
    }
}

impl Reply for PooledConnection {
    fn server_error(&self) -> Option<RedisError> {
        None
    }
}

impl PoolBackend for NodeBackend {
    fn name(&self) -> &str {
        self.engine.name()
    }

    fn db(&self) -> i64 {
        0
    }

    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.engine.send(cmd).await;
            self.note(&result);
            result
        })
    }

    fn send_once<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.engine.send_once(cmd).await;
            self.note(&result);
            result
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.engine.send_pipeline(pipeline, offset, count).await;
            self.note(&result);
            result
        })
    }

    fn checkout(&self) -> BoxFuture<'_, RedisResult<PooledConnection>> {
        Box::pin(async move {
            let result = self.engine.checkout().await;
            self.note(&result);
            result
        })
    }

    fn status(&self) -> PoolStatus {
        self.engine.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::{Route, SlotAddr};

    #[test]
    fn slots_match_redis() {
        // From `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot_for_key(b"foo"), 12182);
        assert_eq!(slot_for_key(b"bar"), 5061);
        assert_eq!(slot_for_key(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags_follow_the_cluster_spec() {
        let slot = |key: &str| slot_for_key(key.as_bytes());
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("{user1000}.followers"), slot("user1000"));
        // Only the first `{...}` counts, and an empty one means "hash the whole key".
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("no-closing{brace"), crc16(b"no-closing{brace") % SLOTS);
    }

    #[test]
    fn agrees_with_redis_rs_routing() {
        for i in 0..2_000 {
            let key = format!("key:{i}:{{tag{}}}", i % 7);
            assert_eq!(
                Route::with_key(&key, SlotAddr::Master),
                Route::new(slot_for_key(key.as_bytes()), SlotAddr::Master),
                "{key}"
            );
        }
    }

    fn node(host: Value, port: i64) -> Value {
        Value::Array(vec![
            host,
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(first: i64, last: i64, master: Value) -> Value {
        Value::Array(vec![Value::Int(first), Value::Int(last), master])
    }

    fn address(host: &str, port: u16) -> Address {
        Address {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn reads_cluster_slots_and_finds_owners() {
        let reply = Value::Array(vec![
            range(
                5461,
                10922,
                node(Value::BulkString(b"10.0.0.2".to_vec()), 7001),
            ),
            range(0, 5460, node(Value::BulkString(b"10.0.0.1".to_vec()), 7000)),
            range(
                10923,
                16383,
                node(Value::BulkString(b"10.0.0.3".to_vec()), 7002),
            ),
        ]);
        let map = SlotMap::parse(reply, &address("seed", 1)).unwrap();
        assert_eq!(map.owner(0), Some(&address("10.0.0.1", 7000)));
        assert_eq!(map.owner(5460), Some(&address("10.0.0.1", 7000)));
        assert_eq!(map.owner(5461), Some(&address("10.0.0.2", 7001)));
        assert_eq!(map.owner(16383), Some(&address("10.0.0.3", 7002)));
    }

    #[test]
    fn unknown_endpoints_mean_the_node_asked() {
        let reply = Value::Array(vec![
            range(0, 99, node(Value::BulkString(Vec::new()), 7000)),
            range(100, 199, node(Value::BulkString(b"?".to_vec()), 7001)),
            range(200, 299, node(Value::Nil, 7002)),
        ]);
        let map = SlotMap::parse(reply, &address("10.1.1.1", 7000)).unwrap();
        assert_eq!(map.owner(0), Some(&address("10.1.1.1", 7000)));
        assert_eq!(map.owner(150), Some(&address("10.1.1.1", 7001)));
        assert_eq!(map.owner(250), Some(&address("10.1.1.1", 7002)));
        assert_eq!(map.owner(300), None, "a slot nobody serves");
    }

    #[test]
    fn refuses_malformed_replies() {
        let error = SlotMap::parse(Value::Int(1), &address("h", 1)).unwrap_err();
        assert!(error.to_string().contains("CLUSTER SLOTS"), "{error}");
        let bad_port = Value::Array(vec![range(0, 1, node(Value::Nil, 70_000))]);
        assert!(SlotMap::parse(bad_port, &address("h", 1)).is_err());
    }

    #[test]
    fn topology_moving_errors() {
        let parse = |reply: &str| match redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
        {
            Ok(value) => value.extract_error().unwrap_err(),
            Err(error) => error,
        };
        assert!(changes_topology(&parse("MOVED 3999 127.0.0.1:6381")));
        assert!(changes_topology(&parse(
            "READONLY You can't write against a read only replica."
        )));
        assert!(changes_topology(&parse("CLUSTERDOWN The cluster is down")));
        assert!(!changes_topology(&parse(
            "CROSSSLOT Keys in request don't hash to the same slot"
        )));
        assert!(!changes_topology(&parse(
            "WRONGTYPE Operation against a key"
        )));
        assert!(changes_topology(&io_error(
            io::ErrorKind::ConnectionRefused,
            "gone".into()
        )));
    }
}
