//! Throughput and latency of one `INCR` per task iteration, no explicit pipelining, at 1, 16
//! and 64 concurrent tasks, against a private `redis-server` on loopback:
//!
//! 1. a plugin's `on_response`, run through the runtime's [`Pipeline`] (the injected handle),
//! 2. the injected [`RedisPool`] called directly,
//! 3. hand-written: one shared `redis::aio::MultiplexedConnection`, redis-rs defaults, which
//!    leave Nagle's algorithm on, as redplug does for small writes to a server on its own host,
//!
//!    3n. the same with `TCP_NODELAY`, as go-redis and hiredis set it: what turning Nagle off
//!    altogether costs a multiplexed connection (informative),
//! 4. hand-written: `deadpool_redis::Pool::get()` per command,
//! 5. `redis-benchmark -t incr -c N -P 1` on the same server, for scale.
//!
//! Rows run interleaved (every row at every concurrency once per round, after an idle pause, in
//! an order in which over six rounds each row follows each other row once) so that a noisy
//! neighbour, a drifting clock or what the previous row left behind hits every row alike; the
//! table shows medians over rounds and ratios computed per round, then the median taken.
//!
//! ```text
//! cargo bench --bench throughput                       # 25 rounds of 0.25 s per row
//! cargo bench --bench throughput -- --rounds 3 --secs 0.5
//! REDPLUG_BENCH_ROUNDS=3 REDPLUG_BENCH_SECS=0.5 cargo bench --bench throughput
//! ```

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_runtime::Pipeline;
use redplug_runtime::Runtime;
use redplug_testkit::RedisServer;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Many short rounds rather than a few long ones: on a shared machine a row's throughput drifts
/// by a third within seconds, and rows measured close together in time drift together. Two
/// runs of 7 rounds of 0.8 s gave ratio medians up to 0.2 apart; of 25 rounds of 0.25 s, 0.07.
const DEFAULT_ROUNDS: usize = 25;
const DEFAULT_SECS: f64 = 0.25;
/// An idle pause before every measurement, so that each row starts from the same quiet
/// machine. Without it the 1-task rows were bimodal, 9 or 75 us per INCR, depending on which
/// row ran just before (likely whether the task and its connection's driver then shared a
/// worker thread, or every reply had to wake a parked one): with a plain rotation the row
/// after `redis-benchmark` always looked twice as fast as the others. 20 ms was not enough.
const SETTLE: Duration = Duration::from_millis(150);
/// Every row increments the same key, like `redis-benchmark -t incr` (`counter:__rand_int__`
/// without `-r` is one literal key).
const KEY: &str = "bench:incr";

/// The plugin of row (1): one injected pool, one `INCR` per response.
#[derive(Plugin)]
#[plugin(name = "bench_incr")]
struct BenchIncr {
    #[redis_pool("bench")]
    redis: RedisPool,
}

impl Middleware for BenchIncr {
    async fn on_response(&self, _response: &mut Response) -> Result<(), PluginError> {
        // Written the way the docs show it: clone the handle, run the command on it.
        let _: i64 = self.redis.clone().incr(KEY, 1).await?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Plugin,
    Handle,
    Multiplexed,
    MultiplexedNodelay,
    Deadpool,
    RedisBenchmark,
}

impl Row {
    const ALL: [Row; 6] = [
        Row::Plugin,
        Row::Handle,
        Row::Multiplexed,
        Row::MultiplexedNodelay,
        Row::Deadpool,
        Row::RedisBenchmark,
    ];

    /// The row's number as the table and `--row` write it.
    fn tag(self) -> &'static str {
        match self {
            Row::Plugin => "1",
            Row::Handle => "2",
            Row::Multiplexed => "3",
            Row::MultiplexedNodelay => "3n",
            Row::Deadpool => "4",
            Row::RedisBenchmark => "5",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Row::Plugin => "(1) plugin on_response via Pipeline",
            Row::Handle => "(2) injected RedisPool, direct",
            Row::Multiplexed => "(3) shared MultiplexedConnection",
            Row::MultiplexedNodelay => "(3n) same, TCP_NODELAY",
            Row::Deadpool => "(4) deadpool_redis get() per cmd",
            Row::RedisBenchmark => "(5) redis-benchmark -P 1",
        }
    }
}

/// What one task holds; cloned once per task, so per-command work is only the command.
#[derive(Clone)]
enum Client {
    Plugin(Pipeline),
    Handle(RedisPool),
    Multiplexed(redis::aio::MultiplexedConnection),
    Deadpool(deadpool_redis::Pool),
}

impl Client {
    async fn incr(&mut self) {
        match self {
            Client::Plugin(pipeline) => {
                let request = Request::new(Bytes::new());
                let response = pipeline
                    .run(request, |_| async { Response::new(Bytes::new()) })
                    .await;
                // A failed hook turns into an error response rather than a panic.
                assert!(
                    response.status().is_success(),
                    "the plugin failed: {}",
                    response.status()
                );
            }
            Client::Handle(pool) => {
                let _: i64 = pool.incr(KEY, 1).await.expect("INCR on the injected pool");
            }
            Client::Multiplexed(conn) => {
                let _: i64 = conn
                    .incr(KEY, 1)
                    .await
                    .expect("INCR on the multiplexed conn");
            }
            Client::Deadpool(pool) => {
                let mut conn = pool.get().await.expect("deadpool checkout");
                let _: i64 = conn.incr(KEY, 1).await.expect("INCR on a deadpool conn");
            }
        }
    }
}

/// One row at one concurrency in one round.
#[derive(Clone, Debug, Default)]
struct Sample {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_cmd: f64,
    server_cmds_per_incr: f64,
    /// `INCR`s the server ran per read from its clients: how well commands are batched.
    incrs_per_read: f64,
}

struct Settings {
    rounds: usize,
    secs: f64,
    /// `--row N`: run only row N (1, 2, 3, 3n, 4 or 5), e.g. under a profiler.
    row: Option<String>,
    /// `--tasks N`: run only this concurrency.
    tasks: Option<usize>,
}

impl Settings {
    /// `--rounds N` / `--secs S` on the command line win over `REDPLUG_BENCH_ROUNDS` /
    /// `REDPLUG_BENCH_SECS`; `--row N` and `--tasks N` narrow the run for profiling. Cargo
    /// passes `--bench`; it and anything unknown is ignored.
    fn from_env_and_args() -> Self {
        let mut rounds = std::env::var("REDPLUG_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS);
        let mut secs = std::env::var("REDPLUG_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SECS);
        let (mut row, mut tasks) = (None, None);
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.windows(2) {
            match pair[0].as_str() {
                "--rounds" => rounds = pair[1].parse().expect("--rounds takes a number"),
                "--secs" => secs = pair[1].parse().expect("--secs takes seconds, e.g. 0.8"),
                "--row" => row = Some(pair[1].clone()),
                "--tasks" => tasks = Some(pair[1].parse().expect("--tasks takes a number")),
                _ => {}
            }
        }
        Self {
            rounds: rounds.max(1),
            secs: secs.max(0.05),
            row,
            tasks,
        }
    }
}

fn main() -> ExitCode {
    let settings = Settings::from_env_and_args();
    if let Err(message) = check_redis_benchmark() {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    let server = RedisServer::start();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = tokio.block_on(run(&server, &settings));
    drop(tokio);
    drop(server);
    if passed {
        ExitCode::SUCCESS
    } else {
        // A missed target is a finding to report, not a failed build: say so, exit 0 anyway
        // unless asked to fail.
        if std::env::var_os("REDPLUG_BENCH_STRICT").is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
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

async fn run(server: &RedisServer, settings: &Settings) -> bool {
    let url = server.url();
    let json = serde_json::json!({
        "version": 3,
        "extra_config": {
            "redis": { "connection_pools": [{ "name": "bench", "address": server.addr() }] }
        }
    })
    .to_string();
    let runtime = Runtime::builder()
        .only_plugins(["bench_incr"])
        .start_json(&json)
        .await
        .expect("start the runtime");
    let pipeline = Pipeline::new(&runtime, ["bench_incr"]).expect("pipeline");
    let handle = runtime
        .get::<BenchIncr>()
        .expect("the bench plugin is built")
        .redis
        .clone();
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let multiplexed = client
        .get_multiplexed_async_connection()
        .await
        .expect("multiplexed connection");
    let nodelay = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .expect("redis url")
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let multiplexed_nodelay = redis::Client::open(nodelay)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("multiplexed connection with TCP_NODELAY");
    // One connection per in-flight command, as a pool-per-command design needs at 64 tasks.
    let max_tasks = *CONCURRENCY.iter().max().unwrap_or(&64);
    let deadpool = deadpool_redis::Pool::builder(
        deadpool_redis::Manager::new(client.get_connection_info().clone()).expect("manager"),
    )
    .max_size(max_tasks)
    .runtime(deadpool_redis::Runtime::Tokio1)
    .build()
    .expect("deadpool");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");

    let clients: BTreeMap<Row, Client> = [
        (Row::Plugin, Client::Plugin(pipeline)),
        (Row::Handle, Client::Handle(handle)),
        (Row::Multiplexed, Client::Multiplexed(multiplexed)),
        (
            Row::MultiplexedNodelay,
            Client::Multiplexed(multiplexed_nodelay),
        ),
        (Row::Deadpool, Client::Deadpool(deadpool)),
    ]
    .into_iter()
    .collect();

    println!(
        "throughput: INCR per task, no pipelining; {} rounds x {:.2} s per row, interleaved; \
         redis-server {} on {}; {} cores",
        settings.rounds,
        settings.secs,
        server_version(&mut admin).await,
        server.addr(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    // Warm-up: open every connection the rows will use (deadpool fills to 64), fault in code.
    for (row, client) in &clients {
        if settings.row.as_deref().is_none_or(|only| only == row.tag()) {
            let tasks = settings.tasks.unwrap_or(max_tasks);
            measure_tasks(client, tasks, Duration::from_millis(300), &mut admin).await;
        }
    }
    let mut bench_requests: BTreeMap<usize, u64> =
        CONCURRENCY.iter().map(|&c| (c, 20_000)).collect();

    let secs = Duration::from_secs_f64(settings.secs);
    let mut samples: BTreeMap<(usize, Row), Vec<Sample>> = BTreeMap::new();
    for round in 0..settings.rounds {
        let started = Instant::now();
        for &tasks in &CONCURRENCY {
            if settings.tasks.is_some_and(|only| only != tasks) {
                continue;
            }
            for row in round_order(round) {
                if settings
                    .row
                    .as_deref()
                    .is_some_and(|only| only != row.tag())
                {
                    continue;
                }
                tokio::time::sleep(SETTLE).await;
                let sample = match clients.get(&row) {
                    Some(client) => measure_tasks(client, tasks, secs, &mut admin).await,
                    None => {
                        let requests = bench_requests[&tasks];
                        let sample = measure_redis_benchmark(server, tasks, requests, &mut admin)
                            .await
                            .unwrap_or_else(|message| panic!("{message}"));
                        // Aim the next round's run at the same wall time as the other rows.
                        let next = (sample.ops_per_sec * settings.secs) as u64;
                        bench_requests.insert(tasks, next.max(2_000));
                        sample
                    }
                };
                samples.entry((tasks, row)).or_default().push(sample);
            }
        }
        eprintln!(
            "round {}/{} done in {:.1} s",
            round + 1,
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    runtime.shutdown().await;
    report(&samples, settings)
}

/// The order of the rows in round `round`: a Williams design, in which over every six rounds
/// each row runs once right after each other row. A plain rotation always ran the same row
/// right after `redis-benchmark`, an outside process during which the runtime sat idle, and
/// that row alone started from a quiet machine (see [`SETTLE`]).
fn round_order(round: usize) -> [Row; 6] {
    const FIRST: [usize; 6] = [0, 1, 5, 2, 4, 3];
    FIRST.map(|index| Row::ALL[(index + round) % Row::ALL.len()])
}

/// Runs `tasks` copies of `client` for `duration`, each doing one `INCR` after another.
async fn measure_tasks(
    client: &Client,
    tasks: usize,
    duration: Duration,
    admin: &mut redis::aio::MultiplexedConnection,
) -> Sample {
    let before_stats = command_stats(admin).await;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let mut client = client.clone();
        let stop = stop.clone();
        let start = start.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 14);
            start.wait().await;
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                client.incr().await;
                let nanos = began.elapsed().as_nanos();
                latencies.push(u32::try_from(nanos).unwrap_or(u32::MAX));
            }
            latencies
        }));
    }
    start.wait().await;
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let began = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("bench task panicked"));
    }
    let elapsed = began.elapsed();
    let cpu = cpu_time(libc::RUSAGE_SELF) - cpu_before;
    let after_stats = command_stats(admin).await;
    let (server_cmds, incrs, reads) = stats_delta(&before_stats, &after_stats);

    latencies.sort_unstable();
    let ops = latencies.len() as f64;
    Sample {
        ops_per_sec: ops / elapsed.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50) / 1e3,
        p99_us: percentile(&latencies, 0.99) / 1e3,
        cpu_us_per_cmd: cpu.as_secs_f64() * 1e6 / ops,
        server_cmds_per_incr: server_cmds as f64 / incrs.max(1) as f64,
        incrs_per_read: incrs as f64 / reads.max(1) as f64,
    }
}

/// Runs `redis-benchmark -t incr -c tasks -P 1 -n requests` against `server` and reads its
/// CSV line: requests per second and latency percentiles.
async fn measure_redis_benchmark(
    server: &RedisServer,
    tasks: usize,
    requests: u64,
    admin: &mut redis::aio::MultiplexedConnection,
) -> Result<Sample, String> {
    let before_stats = command_stats(admin).await;
    let cpu_before = cpu_time(libc::RUSAGE_CHILDREN);
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .args(["-t", "incr", "-P", "1", "--csv", "--precision", "3", "-c"])
        .arg(tasks.to_string())
        .arg("-n")
        .arg(requests.to_string());
    // Waiting for the child is what makes its CPU time show up in RUSAGE_CHILDREN.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let cpu = cpu_time(libc::RUSAGE_CHILDREN) - cpu_before;
    let after_stats = command_stats(admin).await;
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
    let (server_cmds, incrs, reads) = stats_delta(&before_stats, &after_stats);
    Ok(Sample {
        ops_per_sec: rps,
        p50_us: p50_ms * 1e3,
        p99_us: p99_ms * 1e3,
        cpu_us_per_cmd: cpu.as_secs_f64() * 1e6 / requests as f64,
        server_cmds_per_incr: server_cmds as f64 / incrs.max(1) as f64,
        incrs_per_read: incrs as f64 / reads.max(1) as f64,
    })
}

/// User plus system CPU time of this process (`RUSAGE_SELF`) or of its waited-for children
/// (`RUSAGE_CHILDREN`).
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass; all-zero is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut usage), 0, "getrusage failed");
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// The server's counters the table needs.
struct ServerStats {
    /// `INFO commandstats`: command -> calls.
    calls: BTreeMap<String, u64>,
    /// `INFO stats`: `total_reads_processed`, reads from client sockets.
    reads: u64,
}

async fn command_stats(admin: &mut redis::aio::MultiplexedConnection) -> ServerStats {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO stats commandstats");
    let calls = info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect();
    let reads = info
        .lines()
        .find_map(|line| line.strip_prefix("total_reads_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_reads_processed (Redis 6 or later)");
    ServerStats { calls, reads }
}

/// Server commands of every kind, `INCR`/`INCRBY`s, and socket reads between two snapshots;
/// the `INFO` that took the first snapshot is not the client's doing and is left out.
fn stats_delta(before: &ServerStats, after: &ServerStats) -> (u64, u64, u64) {
    let calls = |name: &str, stats: &ServerStats| stats.calls.get(name).copied().unwrap_or(0);
    let total: u64 = after
        .calls
        .iter()
        .map(|(name, &n)| n - calls(name, before))
        .sum::<u64>()
        .saturating_sub(1);
    // redis-rs' `incr(key, 1)` sends INCRBY; redis-benchmark sends INCR.
    let increments = ["incr", "incrby"]
        .iter()
        .map(|name| calls(name, after) - calls(name, before))
        .sum();
    (total, increments, after.reads - before.reads)
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Prints the table and the targets; true when every target is met.
fn report(samples: &BTreeMap<(usize, Row), Vec<Sample>>, settings: &Settings) -> bool {
    let of = |tasks: usize, row: Row| -> &[Sample] {
        samples.get(&(tasks, row)).map_or(&[], Vec::as_slice)
    };
    let med = |tasks: usize, row: Row, field: fn(&Sample) -> f64| {
        median(of(tasks, row).iter().map(field).collect())
    };
    // Ratios pair rows measured in the same round, then take the median over rounds.
    let ratio = |tasks: usize, row: Row, base: Row| {
        median(
            of(tasks, row)
                .iter()
                .zip(of(tasks, base))
                .map(|(a, b)| a.ops_per_sec / b.ops_per_sec)
                .collect(),
        )
    };

    println!();
    println!(
        "medians of {} rounds; ratios are per-round throughput ratios, median taken",
        settings.rounds
    );
    println!(
        "{:>5}  {:<37} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9}",
        "tasks",
        "row",
        "ops/s",
        "p50 us",
        "p99 us",
        "x(3)",
        "x(3n)",
        "x(5)",
        "cpu us",
        "srv cmds",
        "INCRs"
    );
    println!(
        "{:>5}  {:<37} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9}",
        "", "", "", "", "", "", "", "", "/cmd", "/INCR", "/srv read"
    );
    for &tasks in &CONCURRENCY {
        for row in Row::ALL {
            if of(tasks, row).is_empty() {
                continue;
            }
            println!(
                "{:>5}  {:<37} {:>9.0} {:>8.1} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>9.2} {:>9.2}",
                tasks,
                row.label(),
                med(tasks, row, |s| s.ops_per_sec),
                med(tasks, row, |s| s.p50_us),
                med(tasks, row, |s| s.p99_us),
                ratio(tasks, row, Row::Multiplexed),
                ratio(tasks, row, Row::MultiplexedNodelay),
                ratio(tasks, row, Row::RedisBenchmark),
                med(tasks, row, |s| s.cpu_us_per_cmd),
                med(tasks, row, |s| s.server_cmds_per_incr),
                med(tasks, row, |s| s.incrs_per_read),
            );
        }
        println!();
    }
    println!(
        "cpu us/cmd: user+sys CPU of this process (rows 1-4) or of redis-benchmark (row 5) per \
         INCR; the server's CPU is not included. srv cmds/INCR: every cmdstat_* call over INCR calls.\n\
         INCRs/srv read: INCRs over the server's socket reads (total_reads_processed), i.e. how \
         many commands arrive per read: the batching that saves the shared cores' CPU."
    );

    // The spread of the per-round ratios, to tell a real miss from this machine's noise.
    let spread = |tasks: usize, row: Row, base: Row| {
        let ratios = of(tasks, row)
            .iter()
            .zip(of(tasks, base))
            .map(|(a, b)| a.ops_per_sec / b.ops_per_sec);
        ratios.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        })
    };

    println!();
    let mut all = true;
    let mut target = |what: String, (row, base): (Row, Row), tasks: usize, goal: f64| {
        let value = ratio(tasks, row, base);
        if value.is_nan() {
            println!("target {what:<34}    n/a (not measured in this run)");
            return;
        }
        let pass = value >= goal;
        all &= pass;
        let (lo, hi) = spread(tasks, row, base);
        println!(
            "target {what:<34} {value:>6.2}x (goal >= {goal:.2}x)  {}  rounds {lo:.2}..{hi:.2}",
            if pass { "PASS" } else { "MISS" }
        );
    };
    for &tasks in &CONCURRENCY {
        target(
            format!("(1) vs (3) at {tasks} tasks"),
            (Row::Plugin, Row::Multiplexed),
            tasks,
            0.95,
        );
    }
    target(
        "(1) vs (4) at 64 tasks".into(),
        (Row::Plugin, Row::Deadpool),
        64,
        3.0,
    );
    all
}
