//! A Redis Cluster made of several [`RedisServer`]s, private to the test that starts it.

use std::collections::BTreeSet;
use std::fmt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::admin;
use crate::binary::{self, REDIS_CLI};
use crate::server::{RedisServer, RedisServerBuilder};
use crate::wait::{try_wait_for, wait_for_async};

/// How long a new cluster, or one that lost a master, gets to become healthy.
const OK_TIMEOUT: Duration = Duration::from_secs(30);
/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// Options for a [`RedisCluster`]; start one with [`start`](Self::start).
#[derive(Clone)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct RedisClusterBuilder {
    masters: usize,
    replicas_per_master: usize,
    node: RedisServerBuilder,
}

impl RedisClusterBuilder {
    /// The number of masters (at least 3; the default).
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters;
        self
    }

    /// Replicas per master (0, the default, or more).
    pub fn replicas_per_master(mut self, replicas: usize) -> Self {
        self.replicas_per_master = replicas;
        self
    }

    /// Requires this password on every node (`requirepass`, and `masterauth` for replication).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.node = self.node.password(password);
        self
    }

    /// Adds this ACL user with full access on every node.
    pub fn acl_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.node = self.node.acl_user(name, password);
        self
    }

    /// Passes one more option to every node, e.g. `.arg("--maxclients", "50")`.
    pub fn arg(
        mut self,
        name: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> Self {
        self.node = self.node.arg(name, value);
        self
    }

    /// Starts the nodes, forms the cluster with `redis-cli --cluster create`, and returns once
    /// every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start(self) -> RedisCluster {
        assert!(
            self.masters >= 3,
            "a Redis Cluster needs at least 3 masters, not {}",
            self.masters
        );
        let redis_cli = binary::require(REDIS_CLI);
        let count = self.masters * (1 + self.replicas_per_master);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| self.node.clone().cluster_node().start())
            .collect();
        let cluster = RedisCluster { nodes };

        let mut create = Command::new(redis_cli);
        create
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(RedisServer::addr))
            .arg("--cluster-replicas")
            .arg(self.replicas_per_master.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null());
        if let Some(password) = cluster.nodes[0].password() {
            create.env("REDISCLI_AUTH", password);
        }
        let output = create.output().expect("run redis-cli --cluster create");
        if !output.status.success() {
            panic!(
                "redis-cli --cluster create failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        cluster.wait_for_ok();
        cluster
    }
}

/// A Redis Cluster of loopback `redis-server`s with a 1 s node timeout (quick failovers).
///
/// Nodes are numbered in start order; roles change with failovers, so ask
/// [`masters`](Self::masters) or [`node_for_key`](Self::node_for_key) rather than assuming.
/// Every node is killed on drop, and a failing test prints every node's log.
///
/// ```no_run
/// let cluster = redplug_testkit::RedisCluster::start(3, 1);
/// let owner = cluster.kill_master_owning("user:1");
/// cluster.wait_for_ok(); // a replica of `owner` took over its slots
/// assert_ne!(cluster.node_for_key("user:1"), owner);
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3) with `replicas_per_master` replicas each.
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        RedisCluster::builder()
            .masters(masters)
            .replicas_per_master(replicas_per_master)
            .start()
    }

    /// Options for a cluster with a password, ACL users or extra arguments.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder {
            masters: 3,
            replicas_per_master: 0,
            node: RedisServer::builder(),
        }
    }

    /// All nodes, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// Every node's `"127.0.0.1:PORT"`, in start order (stopped nodes included).
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Every node's `redis://` URL (with the password if set), e.g. as cluster seed nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A cluster client seeded with every node, logged in with the password if set.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        let mut builder = redis::cluster::ClusterClientBuilder::new(
            self.addrs().iter().map(|a| format!("redis://{a}")),
        );
        if let Some(password) = self.nodes[0].password() {
            builder = builder.password(password);
        }
        builder.build().expect("build a cluster client")
    }

    /// The running nodes that serve slots as masters, as the cluster currently sees it.
    pub fn masters(&self) -> Vec<usize> {
        let view = self
            .view()
            .unwrap_or_else(|e| panic!("cannot read the cluster topology: {e}"));
        let mut masters: Vec<usize> = view
            .iter()
            .filter(|n| n.is_master() && !n.is_failing() && !n.slots.is_empty())
            .filter_map(|n| self.index_of(&n.addr))
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The nodes replicating from node `master`, as the cluster currently sees it.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let view = self
            .view()
            .unwrap_or_else(|e| panic!("cannot read the cluster topology: {e}"));
        let addr = self.nodes[master].addr();
        let Some(id) = view.iter().find(|n| n.addr == addr).map(|n| n.id.clone()) else {
            return Vec::new();
        };
        let mut replicas: Vec<usize> = view
            .iter()
            .filter(|n| n.master_id.as_deref() == Some(id.as_str()))
            .filter_map(|n| self.index_of(&n.addr))
            .collect();
        replicas.sort_unstable();
        replicas
    }

    /// The slot `key` hashes to (CRC16 of the key, or of its `{hash tag}`, modulo 16384).
    pub fn slot_for_key(key: &str) -> u16 {
        slot_for_key(key.as_bytes())
    }

    /// The node that serves `slot` as master, as the first running node sees it. After a
    /// failover, call [`wait_for_ok`](Self::wait_for_ok) first.
    pub fn node_for_slot(&self, slot: u16) -> usize {
        assert!(slot < SLOTS, "slot {slot} is out of range (0..16384)");
        let view = self
            .view()
            .unwrap_or_else(|e| panic!("cannot read the cluster topology: {e}"));
        let owner = view
            .iter()
            .find(|n| {
                n.is_master()
                    && n.slots
                        .iter()
                        .any(|&(from, to)| (from..=to).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no node serves slot {slot}"));
        self.index_of(&owner.addr)
            .unwrap_or_else(|| panic!("slot {slot} is served by {}, which is not ours", owner.addr))
    }

    /// The node that serves `key` as master.
    pub fn node_for_key(&self, key: &str) -> usize {
        self.node_for_slot(Self::slot_for_key(key))
    }

    /// Empties the script cache of every running node (see [`RedisServer::flush_scripts`]).
    pub fn flush_scripts(&self) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            node.flush_scripts();
        }
    }

    /// Closes every client connection of every running node (see
    /// [`RedisServer::kill_clients`]); returns how many were closed.
    pub fn kill_clients(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(RedisServer::kill_clients)
            .sum()
    }

    /// Kills node `i` (like a crash).
    pub fn kill_node(&self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts node `i` again on its port; it rejoins the cluster (as a replica if it was
    /// replaced meanwhile).
    pub fn restart_node(&self, i: usize) {
        self.nodes[i].restart();
    }

    /// Kills the master serving `key` and returns its index. With replicas, one of them takes
    /// over after about two seconds; [`wait_for_ok`](Self::wait_for_ok) waits for that.
    pub fn kill_master_owning(&self, key: &str) -> usize {
        let owner = self.node_for_key(key);
        self.kill_node(owner);
        owner
    }

    /// Blocks until the cluster is healthy: every running node reports `cluster_state:ok`,
    /// knows every node, agrees on which running master serves each slot, and every running
    /// replica is in sync with its master. Panics with the topology after 30 s.
    pub fn wait_for_ok(&self) {
        if let Err(reason) = try_wait_for(OK_TIMEOUT, || self.check_ok()) {
            panic!(
                "the cluster did not become healthy within {OK_TIMEOUT:?}: {reason}\n{}",
                self.describe()
            );
        }
    }

    /// [`wait_for_ok`](Self::wait_for_ok) for async tests: yields to the runtime between checks.
    pub async fn wait_for_ok_async(&self) {
        wait_for_async("a healthy cluster", OK_TIMEOUT, || async {
            self.check_ok()
        })
        .await;
    }

    /// Why the cluster is not healthy yet, or `Ok`.
    fn check_ok(&self) -> Result<(), String> {
        let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let running_addrs: BTreeSet<String> = running.iter().map(|n| n.addr()).collect();
        let mut first: Option<(String, Topology)> = None;
        for node in running {
            let addr = node.addr();
            let mut con = admin::connect(node, Duration::from_secs(1))?;
            let info: String = admin::query(&mut con, &["CLUSTER", "INFO"])?;
            let state = admin::field(&info, "cluster_state").unwrap_or("?");
            if state != "ok" {
                return Err(format!("{addr} reports cluster_state:{state}"));
            }
            let known = admin::field(&info, "cluster_known_nodes").unwrap_or("?");
            if known != self.nodes.len().to_string() {
                return Err(format!(
                    "{addr} knows {known} of {} nodes",
                    self.nodes.len()
                ));
            }
            let view = parse_nodes(&admin::query::<String>(&mut con, &["CLUSTER", "NODES"])?);
            if let Some(down) = view.iter().find(|n| {
                n.is_master()
                    && !n.slots.is_empty()
                    && (n.is_failing() || !running_addrs.contains(&n.addr))
            }) {
                return Err(format!(
                    "{addr} still routes slots to {}, which is down",
                    down.addr
                ));
            }
            // Clients refresh their slot map from any node: every node must tell the same story.
            let topology = Topology::of(&view);
            match &first {
                Some((other, agreed)) if *agreed != topology => {
                    return Err(format!("{addr} and {other} disagree about slots or roles"));
                }
                Some(_) => {}
                None => first = Some((addr.clone(), topology)),
            }
            let myself = view.iter().find(|n| n.flags.iter().any(|f| f == "myself"));
            if myself.is_some_and(|n| !n.is_master()) {
                let replication: String = admin::query(&mut con, &["INFO", "replication"])?;
                let link = admin::field(&replication, "master_link_status").unwrap_or("?");
                if link != "up" {
                    return Err(format!("replica {addr} has master_link_status:{link}"));
                }
            }
        }
        Ok(())
    }

    /// `CLUSTER NODES` as the first running node that answers sees it.
    fn view(&self) -> Result<Vec<NodeLine>, String> {
        let mut last = "no node is running".to_owned();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match admin::connect(node, Duration::from_secs(1))
                .and_then(|mut con| admin::query::<String>(&mut con, &["CLUSTER", "NODES"]))
            {
                Ok(text) => return Ok(parse_nodes(&text)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr() == addr)
    }

    /// Each running node's `CLUSTER NODES`, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let addr = node.addr();
            if !node.is_running() {
                out.push_str(&format!("-- {addr}: stopped\n"));
                continue;
            }
            match admin::connect(node, Duration::from_secs(1))
                .and_then(|mut con| admin::query::<String>(&mut con, &["CLUSTER", "NODES"]))
            {
                Ok(text) => out.push_str(&format!("-- {addr} sees:\n{text}")),
                Err(e) => out.push_str(&format!("-- {addr}: {e}\n")),
            }
        }
        out
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("nodes", &self.addrs())
            .finish()
    }
}

/// What one node believes about the cluster, in a comparable form.
#[derive(Debug, PartialEq)]
struct Topology {
    /// `(first slot, last slot, master address)`, sorted.
    slots: Vec<(u16, u16, String)>,
    /// Every node's address with its master's address (`None` for masters), sorted.
    roles: Vec<(String, Option<String>)>,
}

impl Topology {
    fn of(view: &[NodeLine]) -> Topology {
        let addr_of = |id: &str| view.iter().find(|n| n.id == id).map(|n| n.addr.clone());
        let mut slots: Vec<(u16, u16, String)> = view
            .iter()
            .filter(|n| n.is_master())
            .flat_map(|n| n.slots.iter().map(|&(from, to)| (from, to, n.addr.clone())))
            .collect();
        slots.sort_unstable();
        let mut roles: Vec<(String, Option<String>)> = view
            .iter()
            .map(|n| (n.addr.clone(), n.master_id.as_deref().and_then(addr_of)))
            .collect();
        roles.sort_unstable();
        Topology { slots, roles }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, PartialEq)]
struct NodeLine {
    id: String,
    addr: String,
    flags: Vec<String>,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    fn is_failing(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus[,host]> <flags> <master|-> <ping> <pong> <epoch>
/// <link> <slot ranges...>`; migrating/importing markers (`[...]`) are skipped.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.to_owned();
            let addr = words.next()?.split(['@', ',']).next()?.to_owned();
            let flags = words.next()?.split(',').map(str::to_owned).collect();
            let master_id = Some(words.next()?).filter(|m| *m != "-").map(str::to_owned);
            let slots = words
                .skip(4)
                .filter(|w| !w.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
                    None => range.parse().ok().map(|slot| (slot, slot)),
                })
                .collect();
            Some(NodeLine {
                id,
                addr,
                flags,
                master_id,
                slots,
            })
        })
        .collect()
}

/// Redis Cluster's key slot: CRC16 (XMODEM) of the key, or of the first non-empty `{tag}`.
fn slot_for_key(key: &[u8]) -> u16 {
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

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot_for_key(b"foo"), 12182);
        assert_eq!(slot_for_key(b"bar"), 5061);
        assert_eq!(
            slot_for_key(b"{user1000}.following"),
            slot_for_key(b"user1000")
        );
        assert_eq!(slot_for_key(b"foo{}{bar}"), slot_for_key(b"foo{}{bar}"));
        assert_eq!(slot_for_key(b"{}foo"), crc16(b"{}foo") % SLOTS);
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host replica e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 0 1426238316232 5 connected 10923 10924-16383
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].addr, "127.0.0.1:30004");
        assert_eq!(
            nodes[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(!nodes[0].is_master());
        assert_eq!(nodes[1].slots, vec![(5461, 10922)]);
        assert_eq!(nodes[2].slots, vec![(0, 5460)]);
        assert!(nodes[3].is_failing());
        assert_eq!(nodes[3].slots, vec![(10923, 10923), (10924, 16383)]);
    }
}
