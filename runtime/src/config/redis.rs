//! `extra_config.redis`: the `connection_pools[]` and `clusters[]` lists, each entry's own keys
//! (`name`, `address` / `addresses`, `db`, `max_redirects`), and the one namespace their names
//! share.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use super::address::parse_address;
use super::model::{
    Address, ClusterConfig, ConnectionOptions, PoolConfig, PoolServer, RedisConfig, SentinelConfig,
};
use super::options::{SHARED_KEYS, read_options};
use super::reader::{IntRange, Keys, Node, Object, Problems, quoted};
use super::text::{describe_char, first_unprintable};

const REDIS_KEYS: Keys = Keys {
    known: &["connection_pools", "clusters"],
    misplaced: &[
        (
            "name",
            "belongs inside a pool or cluster; list pools under `connection_pools`, as in \
             {\"connection_pools\": [{\"name\": \"cache\", \"address\": \"localhost:6379\"}]}",
        ),
        (
            "address",
            "belongs inside a pool; list pools under `connection_pools`, as in \
             {\"connection_pools\": [{\"name\": \"cache\", \"address\": \"localhost:6379\"}]}",
        ),
        (
            "addresses",
            "belongs inside a cluster; list clusters under `clusters`, as in \
             {\"clusters\": [{\"name\": \"shared\", \"addresses\": [\"10.0.0.1:6379\"]}]}",
        ),
    ],
    open: false,
    comments: true,
};

const POOL_KEYS: Keys = Keys {
    known: &concat::<4, 20>(&["name", "address", "sentinel", "db"], &SHARED_KEYS),
    misplaced: &[
        (
            "addresses",
            "is a cluster key; a pool connects to one server, written as \"address\": \
             \"host:port\" (for a Redis Cluster, define it under `clusters`)",
        ),
        (
            "max_redirects",
            "is a cluster key: only a Redis Cluster redirects commands; remove it, or define \
             this connection under `clusters`",
        ),
    ],
    open: false,
    comments: false,
};

const CLUSTER_KEYS: Keys = Keys {
    known: &concat::<3, 19>(&["name", "addresses", "max_redirects"], &SHARED_KEYS),
    misplaced: &[
        (
            "address",
            "is a pool key; a cluster takes a list of seed nodes: \"addresses\": \
             [\"host:port\", ...]",
        ),
        (
            "db",
            "is not available on a cluster: Redis Cluster has only database 0; remove `db`, or \
             use a pool under `connection_pools` to select another database",
        ),
        (
            "sentinel",
            "is a pool key: a Redis Cluster fails over by itself; define a pool behind Sentinel \
             under `connection_pools`",
        ),
    ],
    open: false,
    comments: false,
};

/// Joins an entry's own keys and the shared ones at compile time; `ALL` is their sum.
const fn concat<const OWN: usize, const ALL: usize>(
    own: &[&'static str; OWN],
    shared: &[&'static str; 16],
) -> [&'static str; ALL] {
    assert!(
        OWN + 16 == ALL,
        "ALL must be the number of own keys plus 16"
    );
    let mut all = [""; ALL];
    let mut i = 0;
    while i < OWN {
        all[i] = own[i];
        i += 1;
    }
    while i < ALL {
        all[i] = shared[i - OWN];
        i += 1;
    }
    all
}

const SENTINEL_KEYS: Keys = Keys {
    known: &["master_name", "addresses", "user_name", "password", "tls"],
    misplaced: &[
        (
            "address",
            "is not a sentinel key: list the sentinels as \"addresses\": [\"host:26379\", ...]",
        ),
        (
            "db",
            "belongs to the pool, next to `sentinel`: the database is selected on the master",
        ),
    ],
    open: false,
    comments: false,
};

/// `max_redirects`: -1 is go-redis' way to say "do not follow redirects".
const REDIRECTS: IntRange = IntRange {
    min: -1,
    max: i32::MAX as i64,
    below: "is not a redirect count; write -1 to never follow redirects, or a count of 0 or \
            more (0 means the default, 3)",
    above: "",
};

/// The most connections all pools and clusters together may be configured to hold: each one
/// costs a socket, and its pool reserves room for it up front.
pub(super) const MAX_TOTAL_CONNECTIONS: usize = 100_000;

const DEFAULT_MAX_REDIRECTS: u32 = 3;

/// Names already taken, with the path of the `name` key that took each.
#[derive(Default)]
struct Names(HashMap<String, String>);

/// Reads `extra_config.redis`.
pub(super) fn read_redis(node: &Node<'_>, p: &mut Problems, base: &Path) -> RedisConfig {
    read_redis_with_limit(node, p, base, open_file_limit())
}

/// Reads `extra_config.redis`, checking the connections opened at startup against
/// `open_files`, the process's limit on open files.
pub(super) fn read_redis_with_limit(
    node: &Node<'_>,
    p: &mut Problems,
    base: &Path,
    open_files: Option<u64>,
) -> RedisConfig {
    let mut config = RedisConfig::default();
    let Some(obj) = node.object(p, &REDIS_KEYS) else {
        return config;
    };
    let mut names = Names::default();
    let mut limits = Totals::new(open_files);
    for item in list(&obj, "connection_pools", p) {
        if let Some(pool) = read_pool(&item, p, base, &mut names) {
            limits.add(&item, &pool.options, p);
            config.connection_pools.push(pool);
        }
    }
    for item in list(&obj, "clusters", p) {
        if let Some(cluster) = read_cluster(&item, p, base, &mut names) {
            limits.add(&item, &cluster.options, p);
            config.clusters.push(cluster);
        }
    }
    config
}

/// The connections of every pool and cluster added up, against what redplug and this machine
/// can hold. Each limit is reported once, at the entry that crosses it.
struct Totals {
    connections: usize,
    warm: usize,
    /// How many files this process may open (`ulimit -n`), when the system says.
    open_files: Option<u64>,
    reported: (bool, bool),
}

impl Totals {
    fn new(open_files: Option<u64>) -> Self {
        Self {
            connections: 0,
            warm: 0,
            open_files,
            reported: (false, false),
        }
    }

    fn add(&mut self, entry: &Node<'_>, options: &ConnectionOptions, p: &mut Problems) {
        self.connections = self.connections.saturating_add(options.max_connections());
        self.warm = self.warm.saturating_add(options.min_idle_conns);
        if self.connections > MAX_TOTAL_CONNECTIONS && !self.reported.0 {
            self.reported.0 = true;
            p.add(entry.problem(format!(
                "brings the connections of all pools and clusters up to here to {}, more than \
                 the {MAX_TOTAL_CONNECTIONS} redplug holds at once; lower `pool_size` (or set \
                 `max_active_conns`) here or in the entries before it",
                self.connections
            )));
        }
        if let Some(limit) = self.open_files
            && self.warm as u64 > limit.saturating_sub(RESERVED_FILES)
            && !self.reported.1
        {
            self.reported.1 = true;
            p.add(entry.problem(format!(
                "brings the connections opened at startup (`min_idle_conns` of all pools and \
                 clusters up to here) to {}, but this process may open only {limit} files \
                 (`ulimit -n`), some of which it needs for other things; lower \
                 `min_idle_conns`, or raise the limit",
                self.warm
            )));
        }
    }
}

/// Files a gateway needs besides pre-opened Redis connections: listeners, clients, logs.
const RESERVED_FILES: u64 = 256;

/// The soft limit on open files of this process, if the system has one.
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

fn list<'a>(obj: &Object<'a>, key: &str, p: &mut Problems) -> Vec<Node<'a>> {
    obj.get(key).and_then(|n| n.array(p)).unwrap_or_default()
}

fn read_pool(
    node: &Node<'_>,
    p: &mut Problems,
    base: &Path,
    names: &mut Names,
) -> Option<PoolConfig> {
    let obj = node.object(p, &POOL_KEYS)?;
    let name = read_name(&obj, p, names, "pool");
    let server = match (obj.get("address"), obj.get("sentinel")) {
        (Some(address), None) => read_address(&address, p).map(PoolServer::Address),
        (None, Some(sentinel)) => read_sentinel(&sentinel, p, base).map(PoolServer::Sentinel),
        (Some(_), Some(sentinel)) => {
            p.add(sentinel.problem(
                "cannot be used together with `address`: a pool either talks to one server \
                 (`address`) or follows the master its sentinels name (`sentinel`); remove one",
            ));
            None
        }
        (None, None) => obj
            .required(
                "address",
                p,
                "add the Redis server as host:port, such as \"address\": \"localhost:6379\", \
                 or a `sentinel` object to follow a master through Redis Sentinel",
            )
            .and(None),
    };
    let db = match obj.get("db") {
        Some(n) => n.integer(p, IntRange::COUNT),
        None => Some(0),
    };
    let options = read_options(&obj, p, base);
    Some(PoolConfig {
        name: name?,
        server: server?,
        db: db?,
        options,
    })
}

/// A pool's `sentinel` object.
fn read_sentinel(node: &Node<'_>, p: &mut Problems, base: &Path) -> Option<SentinelConfig> {
    let obj = node.object(p, &SENTINEL_KEYS)?;
    let master_name = obj
        .required(
            "master_name",
            p,
            "name the master as the sentinels monitor it, such as \"master_name\": \"mymaster\"",
        )
        .and_then(|n| {
            let name = n.string(p)?;
            if name.is_empty() || name.chars().any(|c| !('!'..='~').contains(&c)) {
                p.add(n.invalid(
                    "is not a master name: write the name from the sentinels' `sentinel monitor` \
                     line, such as \"mymaster\" (printable ASCII, no spaces)",
                ));
                return None;
            }
            Some(name.to_owned())
        });
    let addresses = obj
        .required(
            "addresses",
            p,
            "list the sentinels as host:port, such as \"addresses\": [\"10.0.0.5:26379\"]",
        )
        .and_then(|n| read_addresses(&n, p, "sentinels", "10.0.0.5:26379"));
    let user_name = obj.get("user_name").and_then(|n| n.secret(p));
    let password = obj.get("password").and_then(|n| n.secret(p));
    let tls = match obj.get("tls") {
        Some(n) => Some(super::tls::read_tls(&n, p, base)?),
        None => None,
    };
    Some(SentinelConfig {
        master_name: master_name?,
        addresses: addresses?,
        user_name,
        password,
        tls,
    })
}

fn read_cluster(
    node: &Node<'_>,
    p: &mut Problems,
    base: &Path,
    names: &mut Names,
) -> Option<ClusterConfig> {
    let obj = node.object(p, &CLUSTER_KEYS)?;
    let name = read_name(&obj, p, names, "cluster");
    let addresses = obj
        .required(
            "addresses",
            p,
            "list the cluster's seed nodes as host:port, such as \"addresses\": \
             [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]",
        )
        .and_then(|n| read_addresses(&n, p, "the cluster's nodes", "10.0.0.1:6379"));
    let max_redirects = match obj.get("max_redirects") {
        Some(n) => n.integer(p, REDIRECTS).map(|v| match v {
            -1 => None,
            0 => Some(DEFAULT_MAX_REDIRECTS),
            v => Some(v as u32),
        }),
        None => Some(Some(DEFAULT_MAX_REDIRECTS)),
    };
    let options = read_options(&obj, p, base);
    Some(ClusterConfig {
        name: name?,
        addresses: addresses?,
        max_redirects: max_redirects?,
        options,
    })
}

/// `name`: required, not blank, and not taken by any other pool or cluster.
fn read_name(obj: &Object<'_>, p: &mut Problems, names: &mut Names, what: &str) -> Option<String> {
    let how = format!(
        "give the {what} a name for plugins to refer to it by, such as \"name\": \"shared_redis\""
    );
    let node = obj.required("name", p, &how)?;
    let name = node.string(p)?;
    if name.trim().is_empty() {
        p.add(node.invalid(format!("is blank; {how}")));
        return None;
    }
    if name.trim() != name {
        p.add(node.invalid(format!(
            "has spaces at its start or end, which every plugin would have to repeat exactly; \
             write {}",
            quoted(name.trim())
        )));
        return None;
    }
    if let Some((index, c)) = first_unprintable(name) {
        p.add(node.invalid(format!(
            "has {} as its character {}: a name may not hold control or text-direction \
             characters, which change what a terminal shows; retype the name",
            describe_char(c),
            index + 1
        )));
        return None;
    }
    match names.0.entry(name.to_owned()) {
        Entry::Occupied(taken) => {
            p.add(node.invalid(format!(
                "is already used at {}; pools and clusters share one set of names, so rename \
                 one of them",
                taken.get()
            )));
            None
        }
        Entry::Vacant(free) => {
            free.insert(node.path().to_owned());
            Some(name.to_owned())
        }
    }
}

fn read_address(node: &Node<'_>, p: &mut Problems) -> Option<Address> {
    let text = node.string(p)?;
    match parse_address(text) {
        Ok(address) => Some(address),
        Err(e) => {
            // Shown with anything that may be a credential replaced by `***`.
            p.add(node.invalid_as(e.shown, e.message));
            None
        }
    }
}

/// A list of `what` (the cluster's nodes, sentinels) as `host:port`; `example` is one.
fn read_addresses(
    node: &Node<'_>,
    p: &mut Problems,
    what: &str,
    example: &str,
) -> Option<Vec<Address>> {
    if node.is_string() {
        // One address where a list belongs: check it as an address first, so a URL with a
        // password in it is described without being echoed.
        if let Some(address) = read_address(node, p) {
            p.add(node.invalid(format!(
                "is a single address, but `addresses` is a list of {what}; write [\"{address}\"]"
            )));
        }
        return None;
    }
    let items = node.array(p)?;
    if items.is_empty() {
        p.add(node.invalid(format!(
            "is empty; list at least one of {what}, such as [\"{example}\"]"
        )));
        return None;
    }
    let addresses: Vec<Option<Address>> = items.iter().map(|n| read_address(n, p)).collect();
    addresses.into_iter().collect()
}
