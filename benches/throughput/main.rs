//! Throughput, latency and client CPU of the injected handles against their peers, at 1, 16 and
//! 64 concurrent tasks, each task running one call after another (no explicit pipelining unless
//! the row says so). Groups of rows, each against its own server:
//!
//! - **`INCR` over loopback** and **`INCR` over a veth pair** into a network namespace (see
//!   [`veth`]; needs root, else only loopback runs), the same rows on both paths:
//!   1. a plugin's `on_response`, run through the runtime's [`Pipeline`](redplug_runtime::Pipeline),
//!   2. the injected `RedisPool` called directly,
//!   3. redis-rs' `MultiplexedConnection` with its defaults (Nagle's algorithm on),
//!
//!      3n. the same with `TCP_NODELAY`, as go-redis and hiredis set it,
//!
//!   f. fred 10's client with its defaults (auto-pipelining, one connection, Nagle on),
//!   4. `deadpool_redis::Pool::get()` per command,
//!   5. `redis-benchmark -t incr -c N -P 1` on the same server, for scale.
//! - **`INCR` on a 3-master loopback cluster**, one key per task: (c) the injected
//!   `RedisCluster`, (cr) redis-rs' async `ClusterConnection`, (cf) fred's clustered client.
//! - **Cost as work grows**, on both paths, at 16 and 64 tasks: `SET` and `GET` of a 16 KiB
//!   value in turn, and a pipeline of 10 `INCR`s per call, for rows 2, 3, 3n and f.
//!
//! Rows run interleaved (every row of every group at every concurrency once per round, after
//! an idle pause, in an order in which each row follows each other row equally often) so that a
//! noisy neighbour, a drifting clock or what the previous row left behind hits every row alike;
//! the tables show medians over rounds and ratios computed per round, then the median taken.
//!
//! ```text
//! cargo bench --bench throughput                       # 25 rounds of 0.25 s per row
//! cargo bench --bench throughput -- --rounds 3 --secs 0.5
//! cargo bench --bench throughput -- --group veth --row 2 --tasks 16   # one cell, for perf
//! cargo bench --bench throughput -- --group loopback --row 2,3 --tasks 16   # two rows, A/B
//! cargo bench --bench throughput -- --recorder   # with a Prometheus recorder installed
//! REDPLUG_BENCH_STRICT=1 cargo bench --bench throughput   # exit 1 when a target is missed
//! ```

mod clients;
mod report;
mod veth;

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redplug_runtime::{Pipeline, Runtime};
use redplug_testkit::{RedisCluster as TestCluster, RedisServer};

use clients::{BenchIncr, Client, KEY, LARGE, Task, Work};
use veth::{Unavailable, VethServer};

/// Many short rounds rather than a few long ones: on a shared machine a row's throughput drifts
/// by a third within seconds, and rows measured close together in time drift together. Two
/// runs of 7 rounds of 0.8 s gave ratio medians up to 0.2 apart; of 25 rounds of 0.25 s, 0.07.
const DEFAULT_ROUNDS: usize = 25;
const DEFAULT_SECS: f64 = 0.25;
/// An idle pause before every measurement, so that each row starts from the same quiet
/// machine. Without it the 1-task rows were bimodal, 9 or 75 us per INCR, depending on which
/// row ran just before (likely whether the task and its connection's driver then shared a
/// worker thread, or every reply had to wake a parked one). 20 ms was not enough.
const SETTLE: Duration = Duration::from_millis(150);

/// The histogram buckets `redplug serve` gives durations, 100 µs to 10 s.
const SERVE_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Where a group's server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Loopback,
    Veth,
    Cluster,
}

/// A set of rows measured against each other: one server, one kind of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Incr(Target),
    Large(Target),
    Pipeline(Target),
}

impl Group {
    /// Every group, in the order a round runs them and the report prints them.
    pub const ALL: [Group; 7] = [
        Group::Incr(Target::Loopback),
        Group::Incr(Target::Veth),
        Group::Incr(Target::Cluster),
        Group::Large(Target::Loopback),
        Group::Large(Target::Veth),
        Group::Pipeline(Target::Loopback),
        Group::Pipeline(Target::Veth),
    ];

    /// The name `--group` takes.
    pub fn name(self) -> &'static str {
        match self {
            Group::Incr(Target::Loopback) => "loopback",
            Group::Incr(Target::Veth) => "veth",
            Group::Incr(Target::Cluster) => "cluster",
            Group::Large(Target::Loopback) => "16k-loopback",
            Group::Large(Target::Veth) => "16k-veth",
            Group::Pipeline(Target::Loopback) => "pipe10-loopback",
            Group::Pipeline(Target::Veth) => "pipe10-veth",
            Group::Large(Target::Cluster) | Group::Pipeline(Target::Cluster) => "unused",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Group::Incr(Target::Loopback) => "INCR per call, loopback",
            Group::Incr(Target::Veth) => "INCR per call, veth pair into a network namespace",
            Group::Incr(Target::Cluster) => {
                "INCR per call, 3-master loopback cluster, a key per task"
            }
            Group::Large(Target::Loopback) => "SET / GET of 16 KiB in turn, loopback",
            Group::Large(Target::Veth) => "SET / GET of 16 KiB in turn, veth",
            Group::Pipeline(Target::Loopback) => "pipeline of 10 INCRs per call, loopback",
            Group::Pipeline(Target::Veth) => "pipeline of 10 INCRs per call, veth",
            Group::Large(Target::Cluster) | Group::Pipeline(Target::Cluster) => "unused",
        }
    }

    pub fn target(self) -> Target {
        match self {
            Group::Incr(target) | Group::Large(target) | Group::Pipeline(target) => target,
        }
    }

    pub fn work(self) -> Work {
        match self {
            Group::Incr(_) => Work::Incr,
            Group::Large(_) => Work::Large,
            Group::Pipeline(_) => Work::Pipeline,
        }
    }

    pub fn rows(self) -> &'static [Row] {
        match self {
            Group::Incr(Target::Cluster) => &[Row::Cluster, Row::RedisRsCluster, Row::FredCluster],
            Group::Incr(_) => &[
                Row::Plugin,
                Row::Handle,
                Row::Multiplexed,
                Row::MultiplexedNodelay,
                Row::Fred,
                Row::Deadpool,
                Row::RedisBenchmark,
            ],
            Group::Large(_) | Group::Pipeline(_) => &[
                Row::Handle,
                Row::Multiplexed,
                Row::MultiplexedNodelay,
                Row::Fred,
            ],
        }
    }

    /// The other clients the handles are held against: a column each, and "best" is the
    /// fastest of them in each round.
    pub fn peers(self) -> &'static [Row] {
        match self {
            Group::Incr(Target::Cluster) => &[Row::RedisRsCluster, Row::FredCluster],
            _ => &[Row::Multiplexed, Row::MultiplexedNodelay, Row::Fred],
        }
    }

    pub fn concurrency(self) -> &'static [usize] {
        match self {
            Group::Incr(_) => &[1, 16, 64],
            Group::Large(_) | Group::Pipeline(_) => &[16, 64],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    Plugin,
    Handle,
    Multiplexed,
    MultiplexedNodelay,
    Fred,
    Deadpool,
    RedisBenchmark,
    Cluster,
    RedisRsCluster,
    FredCluster,
}

impl Row {
    /// The row's mark as the tables and `--row` write it.
    pub fn tag(self) -> &'static str {
        match self {
            Row::Plugin => "1",
            Row::Handle => "2",
            Row::Multiplexed => "3",
            Row::MultiplexedNodelay => "3n",
            Row::Fred => "f",
            Row::Deadpool => "4",
            Row::RedisBenchmark => "5",
            Row::Cluster => "c",
            Row::RedisRsCluster => "cr",
            Row::FredCluster => "cf",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Row::Plugin => "(1) plugin on_response via Pipeline",
            Row::Handle => "(2) injected RedisPool, direct",
            Row::Multiplexed => "(3) redis-rs MultiplexedConnection",
            Row::MultiplexedNodelay => "(3n) same, TCP_NODELAY",
            Row::Fred => "(f) fred 10 client, auto-pipelining",
            Row::Deadpool => "(4) deadpool_redis get() per cmd",
            Row::RedisBenchmark => "(5) redis-benchmark -P 1",
            Row::Cluster => "(c) injected RedisCluster",
            Row::RedisRsCluster => "(cr) redis-rs ClusterConnection",
            Row::FredCluster => "(cf) fred 10 clustered client",
        }
    }
}

/// One row at one concurrency in one round.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_op: f64,
    /// Context switches of this process (or of redis-benchmark) per call, voluntary (a thread
    /// went to sleep) and involuntary (it was preempted): how often the client's threads
    /// stopped, which on a machine whose cores the server shares decides more than the CPU.
    pub switches_per_op: f64,
    /// Commands the server ran per call, every kind counted (deadpool's checkout adds two).
    pub server_cmds_per_op: f64,
    /// Commands the server ran per read from its clients: how well commands are batched.
    pub cmds_per_read: f64,
}

pub type Samples = BTreeMap<(Group, usize, Row), Vec<Sample>>;

pub struct Settings {
    pub rounds: usize,
    pub secs: f64,
    /// `--group NAME`: run only this group.
    pub group: Option<String>,
    /// `--row TAGS`: run only these rows, comma-separated (1, 2, 3, 3n, f, 4, 5, c, cr, cf):
    /// one under a profiler, or two interleaved in one process to compare them.
    pub row: Option<String>,
    /// `--tasks N`: run only this concurrency.
    pub tasks: Option<usize>,
    /// `--recorder`: install a Prometheus recorder, as `redplug serve` does when the config
    /// asks for metrics, so that the handles' metrics are recorded rather than dropped by the
    /// `metrics` facade. Only the handles and the plugin use the facade, so the ratios against
    /// the peers show what recording costs.
    pub recorder: bool,
}

impl Settings {
    /// `--rounds N` / `--secs S` on the command line win over `REDPLUG_BENCH_ROUNDS` /
    /// `REDPLUG_BENCH_SECS`; `--group`, `--row` and `--tasks` narrow the run. Cargo passes
    /// `--bench`; it and anything unknown is ignored.
    fn from_env_and_args() -> Result<Self, String> {
        let mut rounds = std::env::var("REDPLUG_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS);
        let mut secs = std::env::var("REDPLUG_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SECS);
        let (mut group, mut row, mut tasks) = (None, None, None);
        let args: Vec<String> = std::env::args().skip(1).collect();
        let recorder = args.iter().any(|arg| arg == "--recorder");
        for pair in args.windows(2) {
            let value = pair[1].as_str();
            match pair[0].as_str() {
                "--rounds" => rounds = value.parse().map_err(|_| "--rounds takes a number")?,
                "--secs" => {
                    secs = value
                        .parse()
                        .map_err(|_| "--secs takes seconds, e.g. 0.8")?
                }
                "--group" => group = Some(value.to_owned()),
                "--row" => row = Some(value.to_owned()),
                "--tasks" => tasks = Some(value.parse().map_err(|_| "--tasks takes a number")?),
                _ => {}
            }
        }
        if let Some(name) = &group
            && !Group::ALL.iter().any(|g| g.name() == name)
        {
            let names: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
            return Err(format!(
                "no group {name:?}; the groups are {}",
                names.join(", ")
            ));
        }
        if let Some(tags) = &row {
            let mut known: Vec<&str> = Group::ALL
                .iter()
                .flat_map(|group| group.rows())
                .map(|row| row.tag())
                .collect();
            known.sort_unstable();
            known.dedup();
            if let Some(unknown) = tags.split(',').find(|tag| !known.contains(&tag.trim())) {
                return Err(format!(
                    "no row {unknown:?} in --row {tags}; the rows are {}",
                    known.join(", ")
                ));
            }
        }
        Ok(Self {
            rounds: rounds.max(1),
            secs: secs.max(0.05),
            group,
            row,
            tasks,
            recorder,
        })
    }

    fn runs(&self, group: Group, tasks: usize, row: Row) -> bool {
        self.group
            .as_deref()
            .is_none_or(|only| only == group.name())
            && self.tasks.is_none_or(|only| only == tasks)
            && self
                .row
                .as_deref()
                .is_none_or(|only| only.split(',').any(|tag| tag.trim() == row.tag()))
    }

    fn runs_target(&self, target: Target) -> bool {
        Group::ALL.iter().any(|&group| {
            group.target() == target
                && group
                    .concurrency()
                    .iter()
                    .any(|&tasks| group.rows().iter().any(|&row| self.runs(group, tasks, row)))
        })
    }
}

/// The servers of this run.
pub struct Servers {
    pub loopback: RedisServer,
    pub veth: Option<VethServer>,
    pub cluster: Option<TestCluster>,
}

fn main() -> ExitCode {
    let settings = match Settings::from_env_and_args() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(message) = check_redis_benchmark() {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    if settings.recorder {
        // Histogram buckets as `redplug serve` sets them (without buckets the exporter keeps
        // summaries, which cost more to record).
        let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&SERVE_BUCKETS)
            .and_then(|builder| builder.install_recorder());
        if let Err(error) = installed {
            eprintln!("cannot install the Prometheus recorder: {error}");
            return ExitCode::FAILURE;
        }
    }
    let veth = if settings.runs_target(Target::Veth) {
        match VethServer::start() {
            Ok(veth) => Some(veth),
            Err(Unavailable::NotRoot) => {
                eprintln!(
                    "the veth rows need root (they make a network namespace and a veth pair); \
                     not root, so only the loopback and cluster rows run"
                );
                None
            }
            Err(Unavailable::Failed(message)) => {
                eprintln!(
                    "the veth path could not be set up, so only the loopback and cluster rows \
                     run: {message}"
                );
                None
            }
        }
    } else {
        None
    };
    let servers = Servers {
        loopback: RedisServer::start(),
        cluster: settings
            .runs_target(Target::Cluster)
            .then(|| TestCluster::start(3, 0)),
        veth,
    };
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let passed = tokio.block_on(run(&servers, &settings));
    drop(tokio);
    drop(servers);
    if passed {
        ExitCode::SUCCESS
    } else if std::env::var_os("REDPLUG_BENCH_STRICT").is_some() {
        ExitCode::FAILURE
    } else {
        // A missed target is a finding to report, not a failed build, unless asked to fail.
        ExitCode::SUCCESS
    }
}

fn check_redis_benchmark() -> Result<(), String> {
    match Command::new("redis-benchmark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(error) => Err(format!(
            "redis-benchmark is not on PATH ({error}); it is the scale row of this benchmark.\n\
             Install it with `sudo apt-get install redis-tools` (Debian/Ubuntu) or \
             `brew install redis` (macOS), then run `cargo bench --bench throughput` again."
        )),
    }
}

/// Where a target's server answers: `host`, `port`, and one admin connection per server node
/// for its counters.
struct Endpoint {
    host: String,
    port: u16,
    admins: Vec<redis::aio::MultiplexedConnection>,
}

async fn run(servers: &Servers, settings: &Settings) -> bool {
    let max_tasks = 64;
    let mut clients: BTreeMap<(Target, Row), Client> = BTreeMap::new();
    let mut endpoints: BTreeMap<Target, Endpoint> = BTreeMap::new();
    let mut runtimes = Vec::new();

    let loopback_addr = servers.loopback.addr();
    let mut pools = vec![(Target::Loopback, loopback_addr, servers.loopback.url())];
    if let Some(veth) = &servers.veth {
        pools.push((Target::Veth, veth.addr(), veth.url()));
    }
    for (target, addr, url) in pools {
        let (runtime, target_clients) = pool_clients(&addr, &url, max_tasks).await;
        runtimes.push(runtime);
        for (row, client) in target_clients {
            clients.insert((target, row), client);
        }
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        endpoints.insert(
            target,
            Endpoint {
                host: host.to_owned(),
                port: port.parse().expect("a port"),
                admins: vec![admin(&url).await],
            },
        );
    }
    if let Some(cluster) = &servers.cluster {
        let (runtime, cluster_clients) = cluster_clients(cluster).await;
        runtimes.push(runtime);
        for (row, client) in cluster_clients {
            clients.insert((Target::Cluster, row), client);
        }
        let mut admins = Vec::new();
        for url in cluster.urls() {
            admins.push(admin(&url).await);
        }
        endpoints.insert(
            Target::Cluster,
            Endpoint {
                host: String::new(),
                port: 0,
                admins,
            },
        );
    }

    let version = match endpoints.get_mut(&Target::Loopback) {
        Some(endpoint) => server_version(&mut endpoint.admins[0]).await,
        None => "?".into(),
    };
    println!(
        "throughput: {} rounds x {:.2} s per row, interleaved; {}; redis-server {version}; \
         loopback {}{}{}; {} cores",
        settings.rounds,
        settings.secs,
        if settings.recorder {
            "a Prometheus recorder installed"
        } else {
            "no metrics recorder"
        },
        servers.loopback.addr(),
        servers
            .veth
            .as_ref()
            .map(|v| format!(", veth {}", v.addr()))
            .unwrap_or_default(),
        servers
            .cluster
            .as_ref()
            .map(|c| format!(", cluster {}", c.addrs().join(" ")))
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let groups: Vec<Group> = Group::ALL
        .into_iter()
        .filter(|group| endpoints.contains_key(&group.target()))
        .collect();

    // Warm-up: open every connection the rows will use (deadpool fills to 64), fault in code.
    for &group in &groups {
        for &row in group.rows() {
            let tasks = settings.tasks.unwrap_or(max_tasks);
            if row == Row::RedisBenchmark || !settings.runs(group, tasks, row) {
                continue;
            }
            if let (Some(client), Some(endpoint)) = (
                clients.get(&(group.target(), row)),
                endpoints.get_mut(&group.target()),
            ) {
                let warm = Duration::from_millis(300);
                measure_tasks(client, group, tasks, warm, &mut endpoint.admins).await;
            }
        }
    }

    let mut bench_requests: BTreeMap<(Target, usize), u64> = BTreeMap::new();
    let secs = Duration::from_secs_f64(settings.secs);
    let mut samples: Samples = BTreeMap::new();
    for round in 0..settings.rounds {
        let started = Instant::now();
        for &group in &groups {
            let target = group.target();
            let Some(endpoint) = endpoints.get_mut(&target) else {
                continue;
            };
            for &tasks in group.concurrency() {
                for row in round_order(group.rows(), round) {
                    if !settings.runs(group, tasks, row) {
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    let sample = match clients.get(&(target, row)) {
                        Some(client) => {
                            measure_tasks(client, group, tasks, secs, &mut endpoint.admins).await
                        }
                        None => {
                            let requests = bench_requests.get(&(target, tasks)).copied();
                            let requests = requests.unwrap_or(20_000);
                            let sample = measure_redis_benchmark(endpoint, tasks, requests)
                                .await
                                .unwrap_or_else(|message| panic!("{message}"));
                            // Aim the next round's run at the same wall time as the other rows.
                            let next = (sample.ops_per_sec * settings.secs) as u64;
                            bench_requests.insert((target, tasks), next.max(2_000));
                            sample
                        }
                    };
                    samples.entry((group, tasks, row)).or_default().push(sample);
                }
            }
        }
        eprintln!(
            "round {}/{} done in {:.1} s",
            round + 1,
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    for runtime in runtimes {
        runtime.shutdown().await;
    }
    let veth_missing = settings.runs_target(Target::Veth) && servers.veth.is_none();
    report::print(&samples, settings, veth_missing)
}

/// The injected pool, its plugin, and the pool peers, all against the server at `addr`.
async fn pool_clients(addr: &str, url: &str, max_tasks: usize) -> (Runtime, Vec<(Row, Client)>) {
    let json = serde_json::json!({
        "version": 3,
        "extra_config": {
            "redis": { "connection_pools": [{ "name": "bench", "address": addr }] }
        }
    })
    .to_string();
    let runtime = Runtime::builder()
        .only_plugins(["bench_incr"])
        .start_json(&json)
        .await
        .unwrap_or_else(|e| panic!("cannot start the runtime against {addr}: {e}"));
    let pipeline = Pipeline::new(&runtime, ["bench_incr"])
        .unwrap_or_else(|e| panic!("cannot build the plugin pipeline: {e}"));
    let handle = runtime
        .get::<BenchIncr>()
        .unwrap_or_else(|| panic!("the bench plugin was not built"))
        .redis
        .clone();
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("bad url {url}: {e}"));
    let multiplexed = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis-rs cannot connect to {addr}: {e}"));
    let nodelay = redis::IntoConnectionInfo::into_connection_info(url)
        .unwrap_or_else(|e| panic!("bad url {url}: {e}"))
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let multiplexed_nodelay = redis::Client::open(nodelay)
        .unwrap_or_else(|e| panic!("bad url {url}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis-rs cannot connect to {addr}: {e}"));
    let fred_config = fred::types::config::Config::from_url(url)
        .unwrap_or_else(|e| panic!("fred cannot read {url}: {e}"));
    let fred = clients::fred(fred_config).await;
    // One connection per in-flight command, as a pool-per-command design needs at 64 tasks.
    let deadpool = deadpool_redis::Pool::builder(
        deadpool_redis::Manager::new(client.get_connection_info().clone())
            .unwrap_or_else(|e| panic!("deadpool manager: {e}")),
    )
    .max_size(max_tasks)
    .runtime(deadpool_redis::Runtime::Tokio1)
    .build()
    .unwrap_or_else(|e| panic!("deadpool: {e}"));
    let clients = vec![
        (Row::Plugin, Client::Plugin(pipeline)),
        (Row::Handle, Client::Pool(handle)),
        (Row::Multiplexed, Client::Multiplexed(multiplexed)),
        (
            Row::MultiplexedNodelay,
            Client::Multiplexed(multiplexed_nodelay),
        ),
        (Row::Fred, Client::Fred(fred)),
        (Row::Deadpool, Client::Deadpool(deadpool)),
    ];
    (runtime, clients)
}

/// The injected cluster handle and the cluster peers, seeded with every node.
async fn cluster_clients(cluster: &TestCluster) -> (Runtime, Vec<(Row, Client)>) {
    let addrs = cluster.addrs();
    let json = serde_json::json!({
        "version": 3,
        "extra_config": {
            "redis": { "clusters": [{ "name": "bench_cluster", "addresses": addrs }] }
        }
    })
    .to_string();
    let runtime = Runtime::builder()
        .only_plugins(std::iter::empty::<&str>())
        .start_json(&json)
        .await
        .unwrap_or_else(|e| panic!("cannot start the runtime against the cluster: {e}"));
    let handle = runtime
        .selectors()
        .cluster("bench_cluster")
        .unwrap_or_else(|| panic!("the runtime has no cluster `bench_cluster`"));
    let redis_rs = cluster
        .client()
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis-rs cannot connect to the cluster: {e}"));
    let hosts: Vec<(String, u16)> = addrs
        .iter()
        .map(|addr| {
            let (host, port) = addr.rsplit_once(':').expect("host:port");
            (host.to_owned(), port.parse().expect("a port"))
        })
        .collect();
    let fred_config = fred::types::config::Config {
        server: fred::types::config::ServerConfig::new_clustered(hosts),
        ..Default::default()
    };
    let fred = clients::fred(fred_config).await;
    let clients = vec![
        (Row::Cluster, Client::Cluster(handle)),
        (Row::RedisRsCluster, Client::RedisRsCluster(redis_rs)),
        (Row::FredCluster, Client::Fred(fred)),
    ];
    (runtime, clients)
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("bad url {url}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("no admin connection to {url}: {e}"))
}

/// The order of `rows` in round `round`: a Williams design, in which each row runs right after
/// each other row equally often (over `n` rounds for an even number of rows, `2n` for an odd
/// one). A plain rotation always ran the same row right after `redis-benchmark`, an outside
/// process during which the runtime sat idle, and that row alone started from a quiet machine
/// (see [`SETTLE`]).
fn round_order(rows: &[Row], round: usize) -> Vec<Row> {
    let n = rows.len();
    // 0, 1, n-1, 2, n-2, ...
    let mut first: Vec<usize> = Vec::with_capacity(n);
    let (mut low, mut high) = (0, n);
    for i in 0..n {
        if i % 2 == 0 {
            first.push(low);
            low += 1;
        } else {
            high -= 1;
            first.push(high);
        }
    }
    let mut shift = round % (2 * n);
    if shift >= n {
        // Odd n needs the mirrored sequences too; for even n they repeat the design.
        first.reverse();
        shift -= n;
    }
    first.iter().map(|&i| rows[(i + shift) % n]).collect()
}

/// Runs `tasks` copies of `client` for `duration`, each doing `group`'s work call after call.
async fn measure_tasks(
    client: &Client,
    group: Group,
    tasks: usize,
    duration: Duration,
    admins: &mut [redis::aio::MultiplexedConnection],
) -> Sample {
    let work = group.work();
    let value = Bytes::from(vec![b'x'; LARGE]);
    let before_stats = server_stats(admins).await;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut handles = Vec::with_capacity(tasks);
    for index in 0..tasks {
        let mut client = client.clone();
        let stop = stop.clone();
        let start = start.clone();
        let key = match group {
            Group::Incr(Target::Cluster) => format!("bench:incr:{index}"),
            Group::Incr(_) | Group::Pipeline(_) => KEY.to_owned(),
            Group::Large(_) => format!("bench:large:{index}"),
        };
        let mut task = Task {
            key,
            iteration: 0,
            value: value.clone(),
        };
        handles.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 14);
            if work == Work::Large {
                // Every GET finds its value, also the first.
                client.run(work, &mut task).await;
                task.iteration = 0;
            }
            start.wait().await;
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                client.run(work, &mut task).await;
                let nanos = began.elapsed().as_nanos();
                latencies.push(u32::try_from(nanos).unwrap_or(u32::MAX));
            }
            latencies
        }));
    }
    start.wait().await;
    let usage_before = Usage::of(libc::RUSAGE_SELF);
    let began = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(task_latencies) => latencies.extend(task_latencies),
            Err(error) => panic!("a bench task of {} failed: {error}", group.title()),
        }
    }
    let elapsed = began.elapsed();
    let usage = Usage::of(libc::RUSAGE_SELF).since(&usage_before);
    let after_stats = server_stats(admins).await;
    let (server_cmds, reads) = stats_delta(&before_stats, &after_stats, admins.len());

    latencies.sort_unstable();
    let ops = latencies.len() as f64;
    Sample {
        ops_per_sec: ops / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50) / 1e3,
        p99_us: percentile(&latencies, 0.99) / 1e3,
        cpu_us_per_op: usage.cpu.as_secs_f64() * 1e6 / ops,
        switches_per_op: usage.switches as f64 / ops,
        server_cmds_per_op: server_cmds as f64 / ops.max(1.0),
        cmds_per_read: server_cmds as f64 / reads.max(1) as f64,
    }
}

/// Runs `redis-benchmark -t incr -c tasks -P 1 -n requests` against `endpoint` and reads its
/// CSV line: requests per second and latency percentiles.
async fn measure_redis_benchmark(
    endpoint: &mut Endpoint,
    tasks: usize,
    requests: u64,
) -> Result<Sample, String> {
    let before_stats = server_stats(&mut endpoint.admins).await;
    let usage_before = Usage::of(libc::RUSAGE_CHILDREN);
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", &endpoint.host, "-p"])
        .arg(endpoint.port.to_string())
        .args(["-t", "incr", "-P", "1", "--csv", "--precision", "3", "-c"])
        .arg(tasks.to_string())
        .arg("-n")
        .arg(requests.to_string());
    // Waiting for the child is what makes its CPU time show up in RUSAGE_CHILDREN.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let usage = Usage::of(libc::RUSAGE_CHILDREN).since(&usage_before);
    let after_stats = server_stats(&mut endpoint.admins).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "redis-benchmark failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
    // "p99_latency_ms","max_latency_ms"
    let line = stdout
        .lines()
        .find(|line| line.starts_with("\"INCR\""))
        .ok_or_else(|| format!("no INCR line in redis-benchmark's output: {stdout}"))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|field| field.trim_matches('"').parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unexpected redis-benchmark line {line:?}: {e}"))?;
    let [rps, _avg, _min, p50_ms, _p95, p99_ms, _max] = fields[..] else {
        return Err(format!("unexpected redis-benchmark line {line:?}"));
    };
    let (server_cmds, reads) = stats_delta(&before_stats, &after_stats, 1);
    Ok(Sample {
        ops_per_sec: rps,
        p50_us: p50_ms * 1e3,
        p99_us: p99_ms * 1e3,
        cpu_us_per_op: usage.cpu.as_secs_f64() * 1e6 / requests as f64,
        switches_per_op: usage.switches as f64 / requests as f64,
        server_cmds_per_op: server_cmds as f64 / requests as f64,
        cmds_per_read: server_cmds as f64 / reads.max(1) as f64,
    })
}

/// What this process (`RUSAGE_SELF`) or its waited-for children (`RUSAGE_CHILDREN`) used so
/// far.
struct Usage {
    /// User plus system CPU time.
    cpu: Duration,
    /// Voluntary plus involuntary context switches.
    switches: u64,
}

impl Usage {
    fn of(who: libc::c_int) -> Self {
        // SAFETY: getrusage only writes into the struct we pass; all-zero is a valid rusage.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(who, &mut usage), 0, "getrusage failed");
            usage
        };
        let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Self {
            cpu: Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime)),
            switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

/// The servers' counters the tables need, summed over a target's nodes.
struct ServerStats {
    /// `INFO commandstats`: calls of every command.
    calls: u64,
    /// `INFO stats`: `total_reads_processed`, reads from client sockets.
    reads: u64,
}

async fn server_stats(admins: &mut [redis::aio::MultiplexedConnection]) -> ServerStats {
    let mut stats = ServerStats { calls: 0, reads: 0 };
    for admin in admins {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .arg("commandstats")
            .query_async(admin)
            .await
            .unwrap_or_else(|e| panic!("INFO stats commandstats failed: {e}"));
        stats.calls += info
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse::<u64>()
                    .ok()
            })
            .sum::<u64>();
        stats.reads += info
            .lines()
            .find_map(|line| line.strip_prefix("total_reads_processed:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("INFO stats has no total_reads_processed (Redis 6+)"));
    }
    stats
}

/// Server commands and socket reads between two snapshots; the `INFO`s that took the first
/// snapshot (one per node) are not the client's doing and are left out.
fn stats_delta(before: &ServerStats, after: &ServerStats, nodes: usize) -> (u64, u64) {
    let calls = (after.calls - before.calls).saturating_sub(nodes as u64);
    (calls, after.reads - before.reads)
}

async fn server_version(admin: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(admin)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_owned()
}

/// The `q` quantile of sorted nanosecond samples.
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index])
}
