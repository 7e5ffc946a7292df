//! A master with replicas watched by Redis Sentinels, private to the test that starts it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use crate::admin;
use crate::port::HOST;
use crate::server::RedisServer;
use crate::tls::{ClientAuth, TlsFiles};
use crate::wait::try_wait_for;

/// How long replicas get to sync, and sentinels to learn the whole set, in `start`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Connect, read and write timeout of the harness' own queries; a slow answer is retried.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Options for a [`RedisSentinelSet`]; start one with [`start`](Self::start).
///
/// ```no_run
/// use std::time::Duration;
/// let set = redplug_testkit::RedisSentinelSet::builder()
///     .master_name("cache")
///     .replicas(2)
///     .password("data-secret")
///     .sentinel_password("sentinel-secret")
///     .down_after(Duration::from_millis(500))
///     .start();
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct RedisSentinelBuilder {
    master_name: String,
    sentinels: usize,
    replicas: usize,
    password: Option<String>,
    sentinel_password: Option<String>,
    down_after: Duration,
    failover_timeout: Duration,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<ClientAuth>,
}

impl RedisSentinelBuilder {
    /// Serves TLS only, on every data node and sentinel, with certificates from one CA (see
    /// [`RedisSentinelSet::tls`]); replication and the sentinels' own connections use TLS too.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, client_auth: ClientAuth) -> Self {
        self.tls = Some(client_auth);
        self
    }

    /// The name the sentinels monitor the master under (default `"mymaster"`).
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master_name = name.into();
        self
    }

    /// How many sentinels watch the master (default 3, at least 1). The quorum that must agree
    /// the master is down is a majority: `sentinels / 2 + 1`.
    pub fn sentinels(mut self, sentinels: usize) -> Self {
        self.sentinels = sentinels;
        self
    }

    /// How many replicas the master has (default 1; a failover needs at least one).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Requires this password on the master and replicas (`requirepass`, `masterauth` for
    /// replication); the sentinels log in with it (`sentinel auth-pass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Requires this password on the sentinels themselves (`requirepass`); they use it with
    /// each other too (`sentinel sentinel-pass`).
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// How long the master must be unreachable before a sentinel thinks it is down
    /// (`down-after-milliseconds`; default 1 s, so failover tests take seconds).
    pub fn down_after(mut self, down_after: Duration) -> Self {
        self.down_after = down_after;
        self
    }

    /// How long a failover may take before another is tried (`failover-timeout`; default 3 s).
    pub fn failover_timeout(mut self, failover_timeout: Duration) -> Self {
        self.failover_timeout = failover_timeout;
        self
    }

    /// Starts the master, then the replicas, then the sentinels, and returns once every replica
    /// is in sync and every sentinel knows the master, every replica and every other sentinel,
    /// so a failover can happen right away.
    ///
    /// Panics with the logs if that takes more than 20 s, and with install instructions if
    /// `redis-server` is not on `PATH`.
    pub fn start(self) -> RedisSentinelSet {
        assert!(
            self.sentinels >= 1,
            "a sentinel set needs at least 1 sentinel"
        );
        assert!(
            !self.master_name.is_empty() && !self.master_name.contains(char::is_whitespace),
            "the master name must be one word, not {:?}",
            self.master_name
        );

        #[cfg(feature = "tls")]
        let tls = self.tls.map(|auth| {
            let dir = tempfile::Builder::new()
                .prefix("redplug-sentinel-tls-")
                .tempdir()
                .expect("create a temp dir for the set's certificates");
            let files = TlsFiles::generate(dir.path());
            (dir, auth, files)
        });
        #[cfg(not(feature = "tls"))]
        let tls: Option<(tempfile::TempDir, ClientAuth, TlsFiles)> = None;
        let mut node = RedisServer::builder().masterauth();
        if let Some(password) = &self.password {
            node = node.password(password);
        }
        #[cfg(feature = "tls")]
        if let Some((_, auth, files)) = &tls {
            node = node.tls(*auth).tls_files(files.clone());
        }
        let master = node.clone().start();
        let replica_of = format!("{HOST} {}", master.port());
        let mut nodes = vec![master];
        nodes.extend(
            (0..self.replicas).map(|_| node.clone().arg("--replicaof", &replica_of).start()),
        );
        wait_until_synced(&nodes);

        let mut sentinel = RedisServer::builder().sentinel(self.sentinel_conf(nodes[0].port()));
        if let Some(password) = &self.sentinel_password {
            sentinel = sentinel.password(password);
        }
        #[cfg(feature = "tls")]
        if let Some((_, auth, files)) = &tls {
            sentinel = sentinel.tls(*auth).tls_files(files.clone());
        }
        let sentinels: Vec<RedisServer> = (0..self.sentinels)
            .map(|_| sentinel.clone().start())
            .collect();

        let set = RedisSentinelSet {
            sentinels,
            nodes,
            master_name: self.master_name,
            tls: tls.map(|(dir, _, files)| (dir, files)),
        };
        if let Err(reason) = try_wait_for(READY_TIMEOUT, || set.check_monitoring()) {
            set.fail(&format!(
                "the sentinels did not learn the set within {READY_TIMEOUT:?}: {reason}"
            ));
        }
        set
    }

    /// The `sentinel …` lines (and the rest of a sentinel's config beyond port, password, dir
    /// and log, which `RedisServer` writes).
    fn sentinel_conf(&self, master_port: u16) -> Vec<Vec<String>> {
        let name = self.master_name.as_str();
        let quorum = self.sentinels / 2 + 1;
        let millis = |d: Duration| d.as_millis().to_string();
        let mut lines = vec![
            vec!["protected-mode".into(), "no".into()],
            vec!["sentinel".into(), "resolve-hostnames".into(), "no".into()],
            vec![
                "sentinel".into(),
                "monitor".into(),
                name.into(),
                HOST.to_string(),
                master_port.to_string(),
                quorum.to_string(),
            ],
            vec![
                "sentinel".into(),
                "down-after-milliseconds".into(),
                name.into(),
                millis(self.down_after),
            ],
            vec![
                "sentinel".into(),
                "failover-timeout".into(),
                name.into(),
                millis(self.failover_timeout),
            ],
            vec![
                "sentinel".into(),
                "parallel-syncs".into(),
                name.into(),
                "1".into(),
            ],
        ];
        if let Some(password) = &self.password {
            lines.push(vec![
                "sentinel".into(),
                "auth-pass".into(),
                name.into(),
                password.clone(),
            ]);
        }
        // Sentinels ask each other whether the master is down and vote for a leader; with a
        // password on each, they must log in to each other or no failover ever starts.
        if let Some(password) = &self.sentinel_password {
            lines.push(vec![
                "sentinel".into(),
                "sentinel-pass".into(),
                password.clone(),
            ]);
        }
        lines
    }
}

/// A master with replicas and the Redis Sentinels watching it, each a [`RedisServer`] on a
/// free loopback port with its own temp dir; all are killed on drop, and a failing test prints
/// every log.
///
/// Node 0 starts as the master; roles change with failovers, so ask [`master`](Self::master)
/// rather than assuming.
///
/// ```no_run
/// use std::time::Duration;
/// let set = redplug_testkit::RedisSentinelSet::start();
/// let old = set.kill_master();
/// let new = set.wait_for_failover(old, Duration::from_secs(15));
/// assert_eq!(set.master(), new);
/// ```
pub struct RedisSentinelSet {
    // Sentinels first: they are dropped first, so none reacts to the data nodes going away.
    sentinels: Vec<RedisServer>,
    nodes: Vec<RedisServer>,
    master_name: String,
    /// The certificates every process of a TLS set uses, and the directory holding them.
    tls: Option<(tempfile::TempDir, TlsFiles)>,
}

impl RedisSentinelSet {
    /// Starts one master with one replica, watched by three sentinels (quorum 2).
    pub fn start() -> RedisSentinelSet {
        RedisSentinelSet::builder().start()
    }

    /// Options for a set with other counts, passwords, a master name or timings.
    pub fn builder() -> RedisSentinelBuilder {
        RedisSentinelBuilder {
            master_name: "mymaster".into(),
            sentinels: 3,
            replicas: 1,
            password: None,
            sentinel_password: None,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            tls: None,
        }
    }

    /// The certificates of a TLS set (see [`RedisSentinelBuilder::tls`]): one CA for every
    /// process, a server certificate for `127.0.0.1`, and a client certificate.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(_, files)| files)
    }

    /// The name the sentinels know the master by, as clients ask for it.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Every sentinel's `"127.0.0.1:PORT"`, in start order (stopped ones included).
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// Sentinel `i`, to connect to it or to stop and restart it (it keeps what it learned).
    pub fn sentinel(&self, i: usize) -> &RedisServer {
        &self.sentinels[i]
    }

    /// The data nodes, in start order: node 0 started as the master, the others as its replicas.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node that is the master now, by `ROLE` on each running node.
    ///
    /// Panics unless exactly one running node is a master: during a failover there is none,
    /// and a restarted node comes back as a master until the sentinels turn it into a replica.
    pub fn master(&self) -> usize {
        match self.running_masters() {
            Ok(masters) if masters.len() == 1 => masters[0],
            Ok(masters) => self.fail(&format!(
                "expected exactly one running master, found nodes {masters:?}"
            )),
            Err(reason) => self.fail(&format!("cannot tell which node is the master: {reason}")),
        }
    }

    /// Kills the current master (like a crash) and returns its index. It keeps its port and
    /// dir, so [`nodes()[i].restart()`](RedisServer::restart) brings it back.
    pub fn kill_master(&self) -> usize {
        let master = self.master();
        self.nodes[master].stop();
        master
    }

    /// Waits until every running sentinel names the same master other than node `from`
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`), and that node answers `ROLE` as a master; returns
    /// its index. Blocks the thread.
    ///
    /// Panics with what the sentinels said and their logs after `timeout`.
    pub fn wait_for_failover(&self, from: usize, timeout: Duration) -> usize {
        let old = self.nodes[from].addr();
        try_wait_for(timeout, || {
            let addr = self.agreed_master_addr()?;
            if addr == old {
                return Err(format!("the sentinels still name node {from} ({addr})"));
            }
            let promoted = self
                .index_of(&addr)
                .ok_or_else(|| format!("the sentinels name {addr}, which is not in this set"))?;
            match self.role(promoted)?.as_str() {
                "master" => Ok(promoted),
                role => Err(format!(
                    "the sentinels name node {promoted} ({addr}), which answers ROLE {role}"
                )),
            }
        })
        .unwrap_or_else(|reason| {
            self.fail(&format!(
                "no failover away from node {from} ({old}) within {timeout:?}: {reason}"
            ))
        })
    }

    /// The master address every running sentinel gives, if they agree.
    fn agreed_master_addr(&self) -> Result<String, String> {
        let mut answers: BTreeSet<String> = BTreeSet::new();
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            answers.insert(self.master_addr_by(sentinel)?);
        }
        let mut answers = answers.into_iter();
        match (answers.next(), answers.next()) {
            (Some(addr), None) => Ok(addr),
            (None, _) => Err("no sentinel is running".into()),
            (Some(one), Some(other)) => Err(format!(
                "the sentinels disagree: some name {one}, others {other}"
            )),
        }
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` as `"ip:port"`.
    fn master_addr_by(&self, sentinel: &RedisServer) -> Result<String, String> {
        let (ip, port): (String, u16) = admin::query(
            &mut admin::connect(sentinel, QUERY_TIMEOUT)?,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name],
        )
        .map_err(|e| format!("sentinel {}: {e}", sentinel.addr()))?;
        Ok(format!("{ip}:{port}"))
    }

    /// Why the sentinels cannot fail over yet, or `Ok`: each must name node 0 as the master
    /// and see every replica and every other sentinel.
    fn check_monitoring(&self) -> Result<(), String> {
        let master = self.nodes[0].addr();
        let replicas: BTreeSet<String> = self.nodes[1..].iter().map(RedisServer::addr).collect();
        for sentinel in &self.sentinels {
            let me = sentinel.addr();
            let named = self.master_addr_by(sentinel)?;
            if named != master {
                return Err(format!("sentinel {me} names {named}, not {master}"));
            }
            let mut con = admin::connect(sentinel, QUERY_TIMEOUT)?;
            let seen = |kind: &str, con: &mut redis::Connection| {
                let entries: Vec<HashMap<String, String>> =
                    admin::query(con, &["SENTINEL", kind, &self.master_name])
                        .map_err(|e| format!("sentinel {me}: {e}"))?;
                Ok::<_, String>(
                    entries
                        .iter()
                        .filter(|e| e.get("flags").is_some_and(|f| is_healthy(f)))
                        .filter_map(|e| Some(format!("{}:{}", e.get("ip")?, e.get("port")?)))
                        .collect::<BTreeSet<String>>(),
                )
            };
            let seen_replicas = seen("REPLICAS", &mut con)?;
            if seen_replicas != replicas {
                return Err(format!(
                    "sentinel {me} sees replicas {seen_replicas:?}, not {replicas:?}"
                ));
            }
            let others: BTreeSet<String> = self
                .sentinels
                .iter()
                .map(RedisServer::addr)
                .filter(|addr| *addr != me)
                .collect();
            let seen_sentinels = seen("SENTINELS", &mut con)?;
            if seen_sentinels != others {
                return Err(format!(
                    "sentinel {me} sees sentinels {seen_sentinels:?}, not {others:?}"
                ));
            }
        }
        Ok(())
    }

    /// The running nodes that answer `ROLE` as a master.
    fn running_masters(&self) -> Result<Vec<usize>, String> {
        let mut masters = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.is_running() && self.role(i)? == "master" {
                masters.push(i);
            }
        }
        Ok(masters)
    }

    /// The first word of node `i`'s `ROLE`: `master`, `slave`.
    fn role(&self, i: usize) -> Result<String, String> {
        let node = &self.nodes[i];
        let role: redis::Value = admin::query(&mut admin::connect(node, QUERY_TIMEOUT)?, &["ROLE"])
            .map_err(|e| format!("node {i} ({}): {e}", node.addr()))?;
        match role {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::BulkString(word)) => Ok(String::from_utf8_lossy(word).into()),
                Some(redis::Value::SimpleString(word)) => Ok(word.clone()),
                other => Err(format!("node {i}: unexpected ROLE reply {other:?}")),
            },
            other => Err(format!("node {i}: unexpected ROLE reply {other:?}")),
        }
    }

    fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr() == addr)
    }

    /// Panics with `reason`, each node's role and every sentinel's log tail.
    fn fail(&self, reason: &str) -> ! {
        let mut out = format!("sentinel set {:?}: {reason}\n", self.master_name);
        for (i, node) in self.nodes.iter().enumerate() {
            let state = if !node.is_running() {
                "stopped".to_owned()
            } else {
                self.role(i).unwrap_or_else(|e| e)
            };
            out.push_str(&format!("-- node {i} {}: {state}\n", node.addr()));
        }
        for sentinel in &self.sentinels {
            out.push_str(&sentinel.log_tail());
            out.push('\n');
        }
        panic!("{out}")
    }
}

impl fmt::Debug for RedisSentinelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No passwords here: secrets stay out of Debug output.
        f.debug_struct("RedisSentinelSet")
            .field("master_name", &self.master_name)
            .field("sentinels", &self.sentinel_addrs())
            .field(
                "nodes",
                &self.nodes.iter().map(RedisServer::addr).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Blocks until every replica in `nodes[1..]` reports `master_link_status:up`.
fn wait_until_synced(nodes: &[RedisServer]) {
    for replica in &nodes[1..] {
        let synced = try_wait_for(READY_TIMEOUT, || {
            let info: String = admin::query(
                &mut admin::connect(replica, QUERY_TIMEOUT)?,
                &["INFO", "replication"],
            )?;
            match admin::field(&info, "master_link_status") {
                Some("up") => Ok(()),
                status => Err(format!("master_link_status:{}", status.unwrap_or("?"))),
            }
        });
        if let Err(last) = synced {
            panic!(
                "replica {} did not sync with its master {} within {READY_TIMEOUT:?} ({last})\n{}\n{}",
                replica.addr(),
                nodes[0].addr(),
                replica.log_tail(),
                nodes[0].log_tail()
            );
        }
    }
}

/// Whether a `SENTINEL REPLICAS`/`SENTINELS` entry's flags show a reachable instance.
fn is_healthy(flags: &str) -> bool {
    !flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority_of_the_sentinels() {
        let conf = |sentinels| {
            let lines = RedisSentinelSet::builder()
                .sentinels(sentinels)
                .sentinel_conf(6379);
            lines
                .into_iter()
                .find(|l| l[1] == "monitor")
                .map(|l| l[5].clone())
        };
        assert_eq!(conf(1).as_deref(), Some("1"));
        assert_eq!(conf(3).as_deref(), Some("2"));
        assert_eq!(conf(5).as_deref(), Some("3"));
    }

    #[test]
    fn down_or_disconnected_instances_are_not_healthy() {
        assert!(is_healthy("slave"));
        assert!(is_healthy("sentinel"));
        assert!(!is_healthy("slave,s_down"));
        assert!(!is_healthy("sentinel,disconnected"));
        assert!(!is_healthy("master,s_down,o_down"));
    }
}
