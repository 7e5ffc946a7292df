//! Reliability under the faults production inflicts on Redis: restarts under load, long
//! outages, server-side kills, a full server, a slow server, and shutting down mid-load.
//!
//! Every test runs against real `redis-server` processes, drives a `RedisPool` that the runtime
//! injected into a plugin (as a gateway would), is bounded in time, and prints what it measured.
//! Waits for a condition poll with a deadline; the only fixed sleeps pace the load itself.
//!
//! Cluster failover under load lives with the cluster tests (`tests/cluster.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, RedisResult};
use redplug::prelude::*;
use redplug_runtime::Runtime;
use redplug_testkit::{RedisServer, wait_for_async};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::blocking;

/// The pool every test configures, and the name its connections carry in `CLIENT LIST`.
const POOL: &str = "under_test";
const CLIENT_NAME: &str = "reliability";
/// Concurrent tasks in the load tests, as the issue specifies.
const TASKS: usize = 32;

/// A plugin whose only job is to receive the pool, so the tests use the handle a gateway's
/// plugin would hold rather than one looked up by name.
#[derive(Plugin)]
#[plugin(name = "reliability_load")]
struct Load {
    #[redis_pool("under_test")]
    redis: RedisPool,
}

impl Middleware for Load {}

/// Starts a runtime with the pool `under_test` at `server` (plus `options`) and returns the
/// handle injected into the `reliability_load` plugin.
async fn start(server: &RedisServer, options: Value) -> (Runtime, RedisPool) {
    let mut options_with_name = json!({ "client_name": CLIENT_NAME });
    support::merge(&mut options_with_name, options);
    let runtime =
        support::pool_runtime(server, POOL, options_with_name, &["reliability_load"]).await;
    let redis = runtime
        .get::<Load>()
        .expect("the reliability_load plugin is built")
        .redis
        .clone();
    (runtime, redis)
}

/// Connections other than the one asking: (all of them, those named [`CLIENT_NAME`]).
async fn server_clients(server: &RedisServer) -> (usize, usize) {
    let others = support::client_list(server).await;
    let named = others
        .iter()
        .filter(|line| support::client_field(line, "name") == Some(CLIENT_NAME))
        .count();
    (others.len(), named)
}

/// `GET key` through the pool's shared lane.
async fn read(redis: &RedisPool, key: &str) -> RedisResult<Option<i64>> {
    redis.clone().get(key).await
}

fn names_pool(message: &str) -> bool {
    message.contains(&format!("pool `{POOL}`"))
}

// ---------------------------------------------------------------------------------------------
// Restart under load

/// Before the kill, while the server is being killed, and once it is gone: a command that
/// starts in one of the first two phases and ends in the second or third may have been applied
/// without its reply reaching us.
const RUNNING: u8 = 0;
const KILLING: u8 = 1;
const KILLED: u8 = 2;

#[derive(Default)]
struct IncrLog {
    /// The counter value each acknowledged INCR returned.
    acked: Vec<i64>,
    failed: Vec<String>,
    /// Calls in flight while the server died.
    in_doubt: usize,
    slowest: Duration,
}

/// 32 tasks INCR one counter for 5 s; at 2 s the server (AOF, fsync on every write) is killed
/// and started again on the same port. With retries configured to outlast the gap, no call
/// fails and no acknowledged INCR is lost.
///
/// Delivery is at least once: an INCR the server applied just before dying, whose reply died
/// with it, is retried and applied again. Such replies show up as counter values no call was
/// given; the test counts them and bounds them by the calls in flight at the kill.
/// `RedisPool::query_once` is the opt-out for commands that must not be applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_loses_no_acknowledged_increment() {
    const KEY: &str = "restart:counter";
    let server = RedisServer::builder().persistence(true).start();
    // The server is away for 150 ms plus its start-up (AOF replay included). 20 retries that
    // each wait at least 100 ms span at least 2 s, a wide margin on a loaded machine; the
    // defaults (3 retries from 8 ms) would give up after about 140 ms of waiting at most.
    let (runtime, redis) = start(
        &server,
        json!({ "max_retries": 20, "min_retry_backoff": "100ms", "max_retry_backoff": "1s" }),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (redis, stop, phase) = (redis.clone(), stop.clone(), phase.clone());
            tokio::spawn(async move {
                let mut log = IncrLog::default();
                while !stop.load(Ordering::Relaxed) {
                    let began_in = phase.load(Ordering::SeqCst);
                    let started = Instant::now();
                    match redis.clone().incr::<_, _, i64>(KEY, 1).await {
                        Ok(value) => log.acked.push(value),
                        Err(error) => log.failed.push(error.to_string()),
                    }
                    log.slowest = log.slowest.max(started.elapsed());
                    if began_in != KILLED && phase.load(Ordering::SeqCst) != RUNNING {
                        log.in_doubt += 1;
                    }
                }
                log
            })
        })
        .collect();

    tokio::time::sleep_until((load_started + Duration::from_secs(2)).into()).await;
    let before_kill: i64 = server.async_conn().await.get(KEY).await.unwrap();
    phase.store(KILLING, Ordering::SeqCst);
    let stopped_at = Instant::now();
    let back = blocking(|| server.restart_after(Duration::from_millis(150)));
    phase.store(KILLED, Ordering::SeqCst);
    back.wait().await;
    let downtime = stopped_at.elapsed();

    tokio::time::sleep_until((load_started + Duration::from_secs(5)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    let (mut in_doubt, mut slowest) = (0, Duration::ZERO);
    for task in tasks {
        let log = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("every task finishes its last call")
            .expect("no task panicked");
        acked.extend(log.acked);
        failed.extend(log.failed);
        in_doubt += log.in_doubt;
        slowest = slowest.max(log.slowest);
    }
    let final_count: i64 = server.async_conn().await.get(KEY).await.unwrap();
    runtime.shutdown().await;

    acked.sort_unstable();
    let repeated = acked.windows(2).filter(|w| w[0] == w[1]).count();
    let lost_replies: Vec<i64> = {
        let mut given = acked.iter().copied().peekable();
        (1..=final_count)
            .filter(|value| {
                while given.next_if(|v| v < value).is_some() {}
                given.next_if_eq(value).is_none()
            })
            .collect()
    };
    println!(
        "restart under load: {} calls by {TASKS} tasks, {} acknowledged, {} failed; server \
         down for {downtime:?} (counter {before_kill} when killed); final counter \
         {final_count}; {} replies lost and their INCR applied again {lost_replies:?} (calls \
         in flight at the kill: {in_doubt}); slowest call {slowest:?}",
        acked.len() + failed.len(),
        acked.len(),
        failed.len(),
        lost_replies.len(),
    );
    assert!(
        failed.is_empty(),
        "{} calls failed although retries span the restart, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(
        repeated, 0,
        "two calls got the same counter value: an acknowledged INCR was lost in the restart"
    );
    assert!(
        acked.last().is_none_or(|last| *last <= final_count),
        "a call was acknowledged with {:?}, beyond the final counter {final_count}",
        acked.last()
    );
    assert_eq!(
        final_count as usize,
        acked.len() + lost_replies.len(),
        "the final counter is the acknowledged INCRs plus those whose reply was lost"
    );
    assert!(
        lost_replies.len() <= in_doubt,
        "{} INCRs applied without a reply, but only {in_doubt} calls were in flight at the kill",
        lost_replies.len()
    );
    assert!(
        downtime < Duration::from_secs(3),
        "the restart itself took {downtime:?}"
    );
}

/// `query_once` is the per-call opt-out of retries: during an outage it fails after one
/// attempt, where the same command with retries would wait out its backoffs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_once_is_never_retried() {
    let server = RedisServer::start();
    let (runtime, redis) = start(
        &server,
        json!({ "max_retries": 3, "min_retry_backoff": "300ms", "max_retry_backoff": "300ms" }),
    )
    .await;
    let incr = redis::cmd("INCR").arg("once").clone();
    assert_eq!(redis.query_once::<i64>(&incr).await.unwrap(), 1);

    blocking(|| server.stop());
    let started = Instant::now();
    let once = redis.query_once::<i64>(&incr).await.unwrap_err();
    let once_took = started.elapsed();
    let started = Instant::now();
    let retried = redis
        .clone()
        .incr::<_, _, i64>("once", 1)
        .await
        .unwrap_err();
    let retried_took = started.elapsed();
    println!(
        "server down: query_once failed after {once_took:?} ({once}); with 3 retries of 300 ms \
         the same command failed after {retried_took:?} ({retried})"
    );
    assert!(
        once_took < Duration::from_millis(250),
        "query_once waited {once_took:?}: it was retried"
    );
    assert!(
        retried_took >= Duration::from_millis(900),
        "{retried_took:?}"
    );
    assert!(names_pool(&once.to_string()), "{once}");

    blocking(|| server.restart());
    assert_eq!(
        redis.query_once::<i64>(&incr).await.unwrap(),
        1,
        "a fresh connection after the restart (no persistence: the counter starts over)"
    );
    runtime.shutdown().await;
}

/// A connection the server closed while the pool was idle is noticed before a command is
/// written to it, so even `query_once`, which never retries, does not fail for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_once_after_a_server_side_kill_gets_a_live_connection() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({})).await;
    let ping = redis::cmd("PING").clone();
    for round in 1..=5 {
        let _: String = redis.query_once(&ping).await.unwrap();
        let mut admin = server.async_conn().await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .unwrap();
        wait_for_async(
            "the killed connections to be gone",
            Duration::from_secs(5),
            || async {
                match server_clients(&server).await {
                    (_, 0) => Ok(()),
                    (_, named) => Err(format!("{named} still listed")),
                }
            },
        )
        .await;
        let reply: RedisResult<String> = redis.query_once(&ping).await;
        println!("round {round}: killed {killed} connections; query_once then gave {reply:?}");
        assert_eq!(reply.as_deref().ok(), Some("PONG"), "{reply:?}");
    }
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Long outage

#[derive(Default)]
struct OutageLog {
    succeeded: usize,
    failed: usize,
    slowest_failure: Duration,
    /// Distinct error messages (with the port masked) and how often each was seen.
    errors: BTreeMap<String, usize>,
}

/// The server is gone for 10 s while requests keep arriving at a steady 400 per second,
/// whether or not earlier ones finished (as a gateway's traffic does). Each call fails fast
/// with an error naming the pool, so calls in flight stay few instead of piling up; once the
/// server is back the pool reconnects by itself within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outage_fails_fast_without_queueing_and_recovers_by_itself() {
    const OUTAGE: Duration = Duration::from_secs(10);
    const EVERY: Duration = Duration::from_millis(20);
    const PER_TICK: usize = 8;
    let server = RedisServer::start();
    // Default retry policy: 3 retries, backoff from 8 ms to 512 ms.
    let (runtime, redis) = start(&server, json!({})).await;
    let () = redis.clone().set("outage", 1).await.unwrap();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(OutageLog::default()));
    let port = server.port().to_string();
    let back = blocking(|| server.restart_after(OUTAGE));
    let down_at = Instant::now();
    let mut ticker = tokio::time::interval(EVERY);
    let (mut most_in_flight, mut most_waiting, mut most_open) = (0, 0, 0);
    let mut issued = 0;
    while !back.is_finished() {
        ticker.tick().await;
        for _ in 0..PER_TICK {
            let (redis, in_flight, log, port) =
                (redis.clone(), in_flight.clone(), log.clone(), port.clone());
            in_flight.fetch_add(1, Ordering::SeqCst);
            issued += 1;
            tokio::spawn(async move {
                let started = Instant::now();
                let result = read(&redis, "outage").await;
                let took = started.elapsed();
                let mut log = log.lock().unwrap();
                match result {
                    Ok(_) => log.succeeded += 1,
                    Err(error) => {
                        log.failed += 1;
                        log.slowest_failure = log.slowest_failure.max(took);
                        let message = error.to_string().replace(&port, "PORT");
                        *log.errors.entry(message).or_default() += 1;
                    }
                }
                drop(log);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let status = redis.status();
        most_in_flight = most_in_flight.max(in_flight.load(Ordering::SeqCst));
        most_waiting = most_waiting.max(status.waiting);
        most_open = most_open.max(status.size);
    }
    let returned_at = Instant::now();
    let downtime = returned_at - down_at;
    back.wait().await;
    let recovered: Option<i64> = wait_for_async(
        "the pool to reconnect by itself",
        Duration::from_secs(5),
        || read(&redis, "outage"),
    )
    .await;
    let recovery = returned_at.elapsed();
    wait_for_async(
        "every call of the outage to finish",
        Duration::from_secs(10),
        || async {
            match in_flight.load(Ordering::SeqCst) {
                0 => Ok(()),
                n => Err(format!("{n} in flight")),
            }
        },
    )
    .await;
    runtime.shutdown().await;

    let log = log.lock().unwrap();
    println!(
        "long outage: down {downtime:?}; {issued} calls issued at {} per second: {} failed \
         (slowest failure {:?}), {} succeeded; at most {most_in_flight} calls in flight, \
         {most_waiting} tasks waiting for a connection, {most_open} connections open; first \
         success {recovery:?} after the server returned (value {recovered:?}); errors: {:#?}",
        PER_TICK as u128 * 1000 / EVERY.as_millis(),
        log.failed,
        log.slowest_failure,
        log.succeeded,
        log.errors,
    );
    assert!(
        log.failed > 100,
        "calls during the outage must fail: {}",
        log.failed
    );
    assert!(
        log.slowest_failure < Duration::from_secs(2),
        "a call took {:?} to fail: failures are not fast",
        log.slowest_failure
    );
    // 1 s of arrivals: calls that queue for the server instead of failing would reach 4000.
    assert!(
        most_in_flight <= 400,
        "{most_in_flight} calls in flight: calls queue up during the outage"
    );
    assert!(most_open <= 10, "{most_open} connections for pool_size 10");
    for message in log.errors.keys() {
        assert!(
            names_pool(message),
            "the error does not name the pool: {message}"
        );
    }
    assert!(
        log.errors
            .keys()
            .any(|message| message.contains("cannot connect to 127.0.0.1:PORT")),
        "no error says the server cannot be reached: {:?}",
        log.errors
    );
    assert_eq!(
        recovered, None,
        "a server without persistence comes back empty"
    );
    assert!(
        recovery < Duration::from_secs(1),
        "the pool took {recovery:?} to recover after the server returned"
    );
}

// ---------------------------------------------------------------------------------------------
// Server-side kills

/// `CLIENT KILL TYPE normal` six times while 32 tasks run: with the default retry policy no
/// call fails, and afterwards the pool is back to its `min_idle_conns` idle connections (plus
/// the one carrying the shared command lane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_under_load_fails_no_call_and_restores_min_idle_conns() {
    const MIN_IDLE: usize = 3;
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "min_idle_conns": MIN_IDLE })).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (redis, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match redis
                        .clone()
                        .incr::<_, _, i64>(format!("kill:{task}"), 1)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(error) => failed.push(error.to_string()),
                    }
                    slowest = slowest.max(started.elapsed());
                }
                (ok, failed, slowest)
            })
        })
        .collect();

    let mut admin = server.async_conn().await;
    let mut killed = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let count: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .unwrap();
        killed.push(count);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
    for task in tasks {
        let (task_ok, task_failed, task_slowest) = task.await.unwrap();
        ok += task_ok;
        failed.extend(task_failed);
        slowest = slowest.max(task_slowest);
    }
    let settled_from = Instant::now();
    let settled = wait_for_async(
        "min_idle_conns idle connections plus the lane, all alive",
        Duration::from_secs(10),
        || async {
            let status = redis.status();
            let (_, on_server) = server_clients(&server).await;
            if status.idle == MIN_IDLE && status.size == MIN_IDLE + 1 && on_server == status.size {
                Ok((status, on_server))
            } else {
                Err(format!("{status:?}, {on_server} on the server"))
            }
        },
    )
    .await;
    let settle_time = settled_from.elapsed();
    // The lane still works after all that.
    let _: i64 = redis.clone().incr("kill:0", 1).await.unwrap();
    runtime.shutdown().await;

    println!(
        "CLIENT KILL x{} (connections killed each time: {killed:?}) under {TASKS} tasks: {ok} \
         calls succeeded, {} failed, slowest {slowest:?}; settled in {settle_time:?} at \
         {:?} with {} connections on the server",
        killed.len(),
        failed.len(),
        settled.0,
        settled.1,
    );
    assert!(
        failed.is_empty(),
        "calls failed beyond the retry budget: {failed:?}"
    );
    assert!(
        killed.iter().all(|count| *count >= 1),
        "every kill hit the pool: {killed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// maxclients

/// Fills the server with connections of its own until it refuses one; returns them.
async fn fill_server(server: &RedisServer) -> Vec<TcpStream> {
    let mut hogs = Vec::new();
    for _ in 0..64 {
        let mut hog = TcpStream::connect(server.addr()).await.unwrap();
        hog.write_all(b"PING\r\n").await.unwrap();
        let mut reply = vec![0u8; 128];
        let read = tokio::time::timeout(Duration::from_secs(5), hog.read(&mut reply))
            .await
            .expect("the server answers a new connection")
            .unwrap_or(0);
        let reply = String::from_utf8_lossy(&reply[..read]);
        if reply.starts_with("+PONG") {
            hogs.push(hog);
        } else if reply.contains("max number of clients") {
            return hogs;
        } else {
            panic!("unexpected reply while filling the server: {reply:?}");
        }
    }
    panic!("the server accepted 64 connections despite --maxclients");
}

/// With the server at `maxclients`, a pool that needs a connection fails with an error naming
/// the pool and the limit; once clients leave it connects again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_reached_names_the_pool_and_recovers_when_clients_leave() {
    let server = RedisServer::builder().arg("--maxclients", "4").start();
    // Startup is lazy (no min_idle_conns): nothing connects until the first command.
    let (runtime, redis) = start(&server, json!({})).await;
    let hogs = fill_server(&server).await;
    let started = Instant::now();
    let error = read(&redis, "k")
        .await
        .expect_err("the server has no room for the pool");
    let failed_after = started.elapsed();
    let message = error.to_string();
    let hog_count = hogs.len();

    drop(hogs);
    let freed = Instant::now();
    let value = wait_for_async(
        "the pool to connect once clients left",
        Duration::from_secs(5),
        || read(&redis, "k"),
    )
    .await;
    let recovery = freed.elapsed();
    runtime.shutdown().await;

    println!(
        "maxclients 4 held by {hog_count} other connections: the call failed after \
         {failed_after:?}: {message}; connected {recovery:?} after they left (got {value:?})"
    );
    assert!(names_pool(&message), "{message}");
    assert!(message.contains("max number of clients"), "{message}");
    assert!(
        message.contains("maxclients"),
        "says which limit: {message}"
    );
    assert!(failed_after < Duration::from_secs(3), "{failed_after:?}");
    assert!(recovery < Duration::from_secs(2), "{recovery:?}");
}

// ---------------------------------------------------------------------------------------------
// Slow server

/// RESP for one command.
fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    out
}

/// Sends `DEBUG SLEEP secs` on a connection of its own and returns once the server is asleep
/// (a `PING` on another connection goes unanswered for 200 ms), with a task that ends, giving
/// the instant, when the server answers again.
async fn put_to_sleep(server: &RedisServer, secs: u64) -> tokio::task::JoinHandle<Instant> {
    let mut probe = TcpStream::connect(server.addr()).await.unwrap();
    let mut sleeper = TcpStream::connect(server.addr()).await.unwrap();
    sleeper
        .write_all(&resp(&["DEBUG", "SLEEP", &secs.to_string()]))
        .await
        .unwrap();
    let woke = tokio::spawn(async move {
        let mut reply = [0u8; 5];
        sleeper.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"+OK\r\n");
        Instant::now()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pong = [0u8; 7];
    loop {
        assert!(Instant::now() < deadline, "the server never fell asleep");
        probe.write_all(b"PING\r\n").await.unwrap();
        let answered =
            tokio::time::timeout(Duration::from_millis(200), probe.read_exact(&mut pong));
        if answered.await.is_err() {
            return woke;
        }
    }
}

/// `DEBUG SLEEP 5` against the shared lane's 3 s response timeout (`pool::RESPONSE_TIMEOUT`,
/// which has no config key, as in KrakenD): the lane's calls fail after the timeout with an
/// error naming the pool, tasks waiting for an exclusive connection are released after
/// `pool_timeout`, and the pool works again once the server does.
///
/// The test sleeps the server longer than the timeout rather than shortening the timeout for
/// the test: it checks the timeout a gateway really runs with, at the cost of 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_times_out_calls_releases_waiters_and_stays_usable() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "pool_size": 2, "pool_timeout": "1s" })).await;
    let () = redis.clone().set("slow", 1).await.unwrap();
    // The lane holds one of the two connections, this checkout the other.
    let held = redis.checkout().await.unwrap();

    let woke = put_to_sleep(&server, 5).await;
    let asleep_at = Instant::now();
    let lane_calls: Vec<_> = (0..8)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = read(&redis, "slow").await;
                (started.elapsed(), result)
            })
        })
        .collect();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = redis.checkout().await.map(drop);
                (started.elapsed(), result)
            })
        })
        .collect();
    let mut waited = Vec::new();
    for waiter in waiters {
        let (took, result) = waiter.await.unwrap();
        let error = result.expect_err("no connection is free while the server sleeps");
        waited.push((took, error.to_string()));
    }
    let mut timed_out = Vec::new();
    for call in lane_calls {
        let (took, result) = call.await.unwrap();
        let error = result.expect_err("the lane's calls time out while the server sleeps");
        timed_out.push((took, error.is_timeout(), error.to_string()));
    }
    let woke_at = woke.await.unwrap();
    let value: Option<i64> = wait_for_async(
        "the pool to work after the server woke",
        Duration::from_secs(5),
        || read(&redis, "slow"),
    )
    .await;
    let usable_after = woke_at.elapsed();
    drop(held);
    let mut exclusive = redis.checkout().await.unwrap();
    let _: String = redis::cmd("PING")
        .query_async(&mut exclusive)
        .await
        .unwrap();
    drop(exclusive);
    runtime.shutdown().await;

    println!(
        "DEBUG SLEEP 5 (asleep {:?}): lane calls failed after {:?}: {}; pool_timeout 1s \
         waiters released after {:?}: {}; usable again {usable_after:?} after the server woke \
         (got {value:?})",
        woke_at - asleep_at,
        timed_out.iter().map(|t| t.0).collect::<Vec<_>>(),
        timed_out[0].2,
        waited.iter().map(|w| w.0).collect::<Vec<_>>(),
        waited[0].1,
    );
    for (took, is_timeout, message) in &timed_out {
        assert!(*is_timeout, "not reported as a timeout: {message}");
        assert!(names_pool(message), "{message}");
        assert!(
            (Duration::from_millis(2_900)..Duration::from_millis(4_500)).contains(took),
            "a lane call failed after {took:?}, not the 3 s response timeout"
        );
    }
    for (took, message) in &waited {
        assert!(names_pool(message), "{message}");
        assert!(message.contains("pool_timeout"), "{message}");
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(2_500)).contains(took),
            "a waiter was released after {took:?}, not pool_timeout (1s)"
        );
    }
    assert_eq!(value, Some(1));
    assert!(usable_after < Duration::from_secs(2), "{usable_after:?}");
}

/// The lane's 3 s is a read deadline renewed by every reply, not a limit per command: two
/// `DEBUG SLEEP 2` on the lane, the second queued behind the first, answer after 2 and 4 s,
/// and a `GET` queued behind both waits 4 s, all without a timeout, since the server never
/// went 3 s without answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_renew_the_lane_deadline_for_commands_queued_behind_them() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({})).await;
    let () = redis.clone().set("queued", 7).await.unwrap();
    let started = Instant::now();
    let sleep = |redis: RedisPool| async move {
        let result: RedisResult<String> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut redis.clone())
            .await;
        (started.elapsed(), result)
    };
    let first = tokio::spawn(sleep(redis.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(sleep(redis.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = read(&redis, "queued").await;
    let queued_after = started.elapsed();
    let (first_after, first) = first.await.unwrap();
    let (second_after, second) = second.await.unwrap();
    runtime.shutdown().await;

    println!(
        "DEBUG SLEEP 2 twice on the lane: answered after {first_after:?} and {second_after:?}, \
         the GET behind them after {queued_after:?}"
    );
    assert_eq!(first.as_deref(), Ok("OK"));
    assert_eq!(second.as_deref(), Ok("OK"), "the second sleep timed out");
    assert_eq!(queued, Ok(Some(7)), "the queued GET timed out");
    assert!(
        second_after > Duration::from_millis(3_500),
        "the sleeps did not queue on one connection: {second_after:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A server that stops answering

/// What one call of a load test saw.
struct Call {
    took: Duration,
    error: Option<String>,
}

/// [`TASKS`] tasks reading one key in a loop until `stop`, each call timed.
fn closed_loop(
    redis: &RedisPool,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Call>>> {
    (0..TASKS)
        .map(|_| {
            let (redis, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = read(&redis, "frozen").await;
                    calls.push(Call {
                        took: started.elapsed(),
                        error: result.err().map(|error| error.to_string()),
                    });
                }
                calls
            })
        })
        .collect()
}

/// Stops the load and gathers every call, failing the test if a task hangs.
async fn gather(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<Vec<Call>>>) -> Vec<Call> {
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for task in tasks {
        let log = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("a task's last call never ended")
            .expect("no task panicked");
        calls.extend(log);
    }
    calls
}

/// The slowest call, and the distinct errors with how often each came.
fn summary(calls: &[Call], port: u16) -> (Duration, BTreeMap<String, usize>) {
    let slowest = calls.iter().map(|call| call.took).max().unwrap_or_default();
    let mut errors = BTreeMap::new();
    for error in calls.iter().filter_map(|call| call.error.as_ref()) {
        let masked = error.replace(&port.to_string(), "PORT");
        *errors.entry(masked).or_insert(0) += 1;
    }
    (slowest, errors)
}

/// The server freezes (`SIGSTOP`: its kernel still accepts connections, nothing answers) for
/// 10 s under 32 tasks, with `dial_timeout` 1s. Commands on the shared lane fail at its 3 s
/// reply deadline; after that every call waits for at most one dial (1 s), shared with every
/// task waiting for the same dial, so no call takes much more than 4 s (the bound is
/// about 6 s). Once the server runs again, the pool answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_ends_every_call_within_its_bound_and_recovers_at_once() {
    const FROZEN: Duration = Duration::from_secs(10);
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "dial_timeout": "1s" })).await;
    let () = redis.clone().set("frozen", 1).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = closed_loop(&redis, &stop);
    // The load runs a moment before the freeze: this paces the scenario.
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.freeze();
    tokio::time::sleep(FROZEN).await;
    server.thaw();
    let thawed = Instant::now();
    let value: Option<i64> = wait_for_async(
        "the pool to answer after the server runs again",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = thawed.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = gather(&stop, tasks).await;
    runtime.shutdown().await;

    let (slowest, errors) = summary(&calls, server.port());
    let failed: usize = errors.values().sum();
    println!(
        "frozen for {FROZEN:?} under {TASKS} tasks (dial_timeout 1s): {} calls, {failed} \
         failed, slowest {slowest:?}; answered {recovery:?} after the server ran again; \
         errors: {errors:#?}",
        calls.len()
    );
    assert_eq!(value, Some(1));
    assert!(
        failed >= TASKS,
        "calls must fail while the server is frozen"
    );
    assert!(
        slowest < Duration::from_secs(6),
        "a call took {slowest:?} while the server was frozen"
    );
    assert!(
        recovery < Duration::from_millis(500),
        "the pool took {recovery:?} to answer once the server ran again"
    );
    for message in errors.keys() {
        assert!(
            names_pool(message),
            "the error does not name the pool: {message}"
        );
    }
    assert!(
        errors.keys().any(|m| m.contains("dial_timeout")),
        "no call was told that connecting timed out: {errors:?}"
    );
}

/// The same freeze with requests arriving at 400 a second whether or not earlier ones
/// finished: calls in flight stay bounded by what arrives within one bound (the 3 s reply
/// deadline), instead of piling up for the whole freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_under_open_loop_load_keeps_calls_in_flight_bounded() {
    const FROZEN: Duration = Duration::from_secs(10);
    const EVERY: Duration = Duration::from_millis(20);
    const PER_TICK: usize = 8;
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "dial_timeout": "1s" })).await;
    let () = redis.clone().set("frozen", 1).await.unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));

    server.freeze();
    let frozen_at = Instant::now();
    let mut ticker = tokio::time::interval(EVERY);
    let mut most_in_flight = 0;
    while frozen_at.elapsed() < FROZEN {
        ticker.tick().await;
        for _ in 0..PER_TICK {
            let (redis, in_flight, slowest) = (redis.clone(), in_flight.clone(), slowest.clone());
            in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let started = Instant::now();
                let _ = read(&redis, "frozen").await;
                let took = started.elapsed();
                let mut slowest = slowest.lock().unwrap();
                *slowest = (*slowest).max(took);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        most_in_flight = most_in_flight.max(in_flight.load(Ordering::SeqCst));
    }
    server.thaw();
    let thawed = Instant::now();
    let value: Option<i64> = wait_for_async(
        "the pool to answer after the server runs again",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = thawed.elapsed();
    wait_for_async("every call to end", Duration::from_secs(10), || async {
        match in_flight.load(Ordering::SeqCst) {
            0 => Ok(()),
            n => Err(format!("{n} in flight")),
        }
    })
    .await;
    runtime.shutdown().await;

    let slowest = *slowest.lock().unwrap();
    let per_second = PER_TICK as u128 * 1000 / EVERY.as_millis();
    println!(
        "frozen for {FROZEN:?} at {per_second} calls a second (dial_timeout 1s): at most \
         {most_in_flight} calls in flight, slowest {slowest:?}; answered {recovery:?} after the \
         server ran again"
    );
    assert_eq!(value, Some(1));
    // 3.5 s of arrivals: the 3 s reply deadline, plus scheduling slack.
    assert!(
        most_in_flight <= 1_400,
        "{most_in_flight} calls in flight: calls pile up while the server is frozen"
    );
    assert!(slowest < Duration::from_secs(6), "a call took {slowest:?}");
    assert!(recovery < Duration::from_millis(500), "{recovery:?}");
}

/// A listener that accepts connections and never says a word (a wedged proxy, a port taken by
/// something else): every call ends within `dial_timeout`, and waiting tasks share each dial
/// instead of queueing one dial each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_fails_calls_within_dial_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        })
    };
    let config = json!({ "extra_config": { "redis": { "connection_pools": [{
        "name": POOL, "address": format!("127.0.0.1:{port}"), "client_name": CLIENT_NAME,
        "dial_timeout": "1s"
    }] } } });
    let runtime = Runtime::builder()
        .only_plugins(["reliability_load"])
        .start_json(&config.to_string())
        .await
        .unwrap();
    let redis = runtime.get::<Load>().unwrap().redis.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks = closed_loop(&redis, &stop);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = gather(&stop, tasks).await;
    let ran = started.elapsed();
    runtime.shutdown().await;
    acceptor.abort();

    let (slowest, errors) = summary(&calls, port);
    let dials = accepted.load(Ordering::SeqCst);
    println!(
        "a silent listener for {ran:?} under {TASKS} tasks: {} calls, slowest {slowest:?}, \
         {dials} connections accepted; errors: {errors:#?}",
        calls.len()
    );
    assert!(calls.iter().all(|call| call.error.is_some()));
    assert!(
        slowest < Duration::from_millis(2_500),
        "a call took {slowest:?} with dial_timeout 1s"
    );
    // One shared dial at a time: about one a second, not one per task.
    assert!(dials <= 10, "{dials} connections in {ran:?}");
    for message in errors.keys() {
        assert!(
            names_pool(message) && message.contains("dial_timeout"),
            "{message}"
        );
    }
}

/// A pool with the wrong password under 32 tasks: the server turns every connection away, and
/// the pool spaces its dials out instead of storming the server with thousands a second; once
/// the server accepts the password, the pool connects within `max_retry_backoff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_do_not_storm_the_server() {
    const LOAD: Duration = Duration::from_secs(3);
    let server = RedisServer::builder().password("right").start();
    let (runtime, redis) = start(&server, json!({ "password": "wrong" })).await;
    let received = |info: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO stats lists total_connections_received")
    };
    let mut admin = server.async_conn().await;
    let before: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = closed_loop(&redis, &stop);
    tokio::time::sleep(LOAD).await;
    let after: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let dials = received(&after) - received(&before);

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("wrong")
        .query_async(&mut admin)
        .await
        .unwrap();
    let fixed = Instant::now();
    let recovered = wait_for_async(
        "the pool to connect once the password is right",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = fixed.elapsed();
    let calls = gather(&stop, tasks).await;
    runtime.shutdown().await;

    let (_, errors) = summary(&calls, server.port());
    println!(
        "wrong password under {TASKS} tasks for {LOAD:?}: {} calls, {dials} connections \
         received by the server; connected {recovery:?} after the password was fixed (got \
         {recovered:?}); errors: {errors:#?}",
        calls.len()
    );
    // The backoff tops out at max_retry_backoff (512 ms): a few dials a second.
    assert!(
        dials <= 40,
        "{dials} connection attempts in {LOAD:?}: the pool storms the server"
    );
    assert!(recovery < Duration::from_millis(1_500), "{recovery:?}");
    assert!(!errors.is_empty());
    assert!(
        errors
            .keys()
            .all(|m| names_pool(m) && m.contains("rejected the credentials")),
        "{errors:?}"
    );
}

/// Exclusive connections keep deadlines too: an ordinary command gets 3 s, a blocking one its
/// own timeout plus 3 s, and `BLPOP key 0` waits as long as it must (here: through a freeze);
/// a checkout while the server is frozen ends within its bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_connections_have_reply_deadlines_unless_told_to_wait_forever() {
    let server = RedisServer::start();
    let (runtime, redis) = start(
        &server,
        json!({ "dial_timeout": "1s", "pool_timeout": "1s", "pool_size": 6 }),
    )
    .await;
    let mut plain = redis.checkout().await.unwrap();
    let mut blocking_once = redis.checkout().await.unwrap();
    let mut forever = redis.checkout().await.unwrap();
    let idle = redis.checkout().await.unwrap();
    drop(idle);

    server.freeze();
    let frozen = Instant::now();
    let plain_call = async {
        let started = Instant::now();
        let result: RedisResult<Option<i64>> = plain.get("k").await;
        (started.elapsed(), result)
    };
    let blocking_call = async {
        let started = Instant::now();
        let result: RedisResult<Option<(String, String)>> = blocking_once.blpop("list", 1.0).await;
        (started.elapsed(), result)
    };
    let checkout = async {
        let started = Instant::now();
        let result = redis.checkout().await.map(drop);
        (started.elapsed(), result)
    };
    let waiting = tokio::spawn(async move {
        let result: RedisResult<Option<(String, String)>> = forever.blpop("list", 0.0).await;
        (Instant::now(), result)
    });
    let ((plain_took, plain), (blocking_took, blocked), (checkout_took, checked_out)) =
        tokio::join!(plain_call, blocking_call, checkout);
    let still_waiting = !waiting.is_finished();
    let waited = frozen.elapsed();
    server.thaw();
    let () = server
        .async_conn()
        .await
        .rpush("list", "item")
        .await
        .unwrap();
    let (answered, forever_result) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("BLPOP 0 answered once the server ran again")
        .unwrap();
    runtime.shutdown().await;

    let plain = plain.expect_err("a frozen server cannot answer");
    let blocked = blocked.expect_err("a frozen server cannot answer");
    println!(
        "frozen server: GET on an exclusive connection failed after {plain_took:?} ({plain}); \
         BLPOP 1 after {blocking_took:?} ({blocked}); a checkout ended after {checkout_took:?} \
         ({checked_out:?}); BLPOP 0 still waited after {waited:?} and got {forever_result:?} \
         {:?} after the thaw",
        answered.saturating_duration_since(frozen + waited)
    );
    assert!(
        plain.is_timeout() && names_pool(&plain.to_string()),
        "{plain}"
    );
    assert!(
        (Duration::from_millis(2_900)..Duration::from_millis(4_500)).contains(&plain_took),
        "{plain_took:?}"
    );
    assert!(blocked.is_timeout(), "{blocked}");
    assert!(
        (Duration::from_millis(3_900)..Duration::from_millis(5_500)).contains(&blocking_took),
        "BLPOP with a 1 s timeout gave up after {blocking_took:?}, not 1 s + 3 s"
    );
    assert!(
        checkout_took < Duration::from_millis(3_500),
        "a checkout took {checkout_took:?}"
    );
    assert!(
        checked_out.is_err(),
        "no connection can be verified while frozen"
    );
    assert!(still_waiting, "BLPOP 0 gave up while the server was frozen");
    assert_eq!(forever_result, Ok(Some(("list".into(), "item".into()))));
}

// ---------------------------------------------------------------------------------------------
// Shutdown

/// `Runtime::shutdown` while 32 tasks INCR: every task ends promptly (its in-flight command
/// answered or failed with a clear error), the server sees no connection left, and later calls
/// say the runtime is shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_load_closes_every_connection_cleanly() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "min_idle_conns": 2 })).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    match redis
                        .clone()
                        .incr::<_, _, i64>(format!("shut:{task}"), 1)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(error) => return (ok, error.to_string(), Instant::now()),
                    }
                }
            })
        })
        .collect();
    // Some held exclusive connections, in use at the time of shutdown.
    let exclusives: Vec<_> = (0..2)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let mut conn = redis.checkout().await?;
                let mut pings = 0;
                loop {
                    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                    pings += 1;
                    if pings > 1_000_000 {
                        return RedisResult::Ok(pings);
                    }
                }
            })
        })
        .collect();
    let (before, _) = wait_for_async("load on the pool", Duration::from_secs(5), || async {
        match server_clients(&server).await {
            (open, _) if open >= 3 => Ok((open, ())),
            (open, _) => Err(format!("{open} connections")),
        }
    })
    .await;
    // Let the load run a while: this paces the scenario, it does not wait for a condition.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let shut_at = Instant::now();
    runtime.shutdown().await;
    let shutdown_took = shut_at.elapsed();
    let mut ok = 0;
    let mut errors = BTreeMap::<String, usize>::new();
    let mut last_end = Duration::ZERO;
    for task in tasks {
        let (task_ok, error, ended) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a task hung after shutdown")
            .unwrap();
        ok += task_ok;
        *errors.entry(error).or_default() += 1;
        last_end = last_end.max(ended.saturating_duration_since(shut_at));
    }
    let mut exclusive_errors = Vec::new();
    for task in exclusives {
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("an exclusive connection hung after shutdown")
            .unwrap();
        exclusive_errors.push(format!("{result:?}"));
    }
    let closed_from = Instant::now();
    wait_for_async(
        "no connection left on the server",
        Duration::from_secs(5),
        || async {
            match server_clients(&server).await {
                (0, _) => Ok(()),
                (open, _) => Err(format!("{open} still open")),
            }
        },
    )
    .await;
    let closed_after = closed_from.elapsed();
    let later = read(&redis, "shut:0").await.unwrap_err();
    let later_once = redis
        .query_once::<i64>(redis::cmd("INCR").arg("shut:0"))
        .await
        .unwrap_err();
    let later_get = redis
        .checkout()
        .await
        .expect_err("no checkout after shutdown");

    println!(
        "shutdown under {TASKS} tasks ({before} connections open): shutdown took \
         {shutdown_took:?}; {ok} calls succeeded; every task ended within {last_end:?} with \
         {errors:?}; exclusive users ended with {exclusive_errors:?}; the server saw the last \
         connection close {closed_after:?} after they ended; a later call: {later}"
    );
    for message in errors
        .keys()
        .chain([&later.to_string(), &later_get.to_string()])
    {
        assert!(
            names_pool(message) && message.contains("shut down"),
            "not a clean shutdown error: {message}"
        );
    }
    assert!(later_once.to_string().contains("shut down"), "{later_once}");
    assert!(last_end < Duration::from_secs(4), "{last_end:?}");
}
