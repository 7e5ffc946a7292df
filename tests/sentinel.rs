//! Pools behind Redis Sentinel, against real processes: a master, a replica and three
//! sentinels started by the test kit. INCR under load through an injected field while the
//! master is killed, a failover the sentinels run while the old master keeps running, errors
//! when no sentinel can name the master, and credentials rotated on a running pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_runtime::Runtime;
use redplug_testkit::{RedisSentinelSet, RedisServer, wait_for_async};
use serde_json::{Value, json};

#[path = "support/mod.rs"]
mod support;

use support::blocking;

const POOL: &str = "redis_at_eight";
const TASKS: usize = 16;

/// A plugin that only holds the pool, as a gateway's plugin would: the same field whether the
/// pool has an `address` or a `sentinel`.
#[derive(Plugin)]
#[plugin(name = "sentinel_load")]
struct Load {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
}

impl Middleware for Load {}

/// The pool entry for `set`, with `sentinel` keys and pool keys added.
fn pool_entry(set: &RedisSentinelSet, sentinel: Value, pool: Value) -> Value {
    let mut sentinel_object = json!({
        "master_name": set.master_name(),
        "addresses": set.sentinel_addrs(),
    });
    support::merge(&mut sentinel_object, sentinel);
    let mut entry = json!({
        "name": POOL,
        "db": 8,
        "client_name": "sentinel_test",
        "sentinel": sentinel_object,
    });
    support::merge(&mut entry, pool);
    entry
}

async fn start(entry: Value) -> (Runtime, RedisPool) {
    let config = json!({ "extra_config": { "redis": { "connection_pools": [entry] } } });
    let runtime = Runtime::builder()
        .only_plugins(["sentinel_load"])
        .start_json(&config.to_string())
        .await
        .unwrap_or_else(|error| panic!("the runtime did not start: {error}"));
    let redis = runtime
        .get::<Load>()
        .unwrap_or_else(|| panic!("the sentinel_load plugin was built"))
        .redis
        .clone();
    (runtime, redis)
}

/// The reply to one `INCR` through a runtime started with `entry`, which must succeed (`why`).
async fn incr_ok(entry: Value, why: &str) -> i64 {
    let (runtime, redis) = start(entry).await;
    let value = redis.clone().incr("counter", 1).await.expect(why);
    runtime.shutdown().await;
    value
}

/// The error of one `INCR` through a runtime started with `entry`, which must fail (`why`),
/// printed for the test log.
async fn incr_error(entry: Value, why: &str) -> String {
    let (runtime, redis) = start(entry).await;
    let error = redis
        .clone()
        .incr::<_, _, i64>("counter", 1)
        .await
        .expect_err(why)
        .to_string();
    println!("{error}");
    runtime.shutdown().await;
    error
}

/// One call of the load: when it started and ended, and its outcome.
type Call = (Instant, Instant, Result<i64, String>);

/// `TASKS` tasks calling `INCR counter` one call after another, until [`Traffic::stop`].
struct Traffic {
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(redis: &RedisPool) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..TASKS)
            .map(|_| {
                let (mut redis, stop, calls) = (redis.clone(), stop.clone(), calls.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome: Result<i64, String> =
                            redis.incr("counter", 1).await.map_err(|e| e.to_string());
                        let failed = outcome.is_err();
                        calls.lock().unwrap_or_else(|e| e.into_inner()).push((
                            started,
                            Instant::now(),
                            outcome,
                        ));
                        if failed {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Traffic { stop, calls, tasks }
    }

    /// Stops the tasks and hands back every call they made.
    async fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Asserts that no call started more than a second after `failed_over_at` (the sentinels
/// name the promoted node and it says it is the master) failed: the pool gets a second to
/// notice.
#[track_caller]
fn assert_none_failed_after(calls: &[Call], failed_over_at: Instant) {
    let settled = failed_over_at + Duration::from_secs(1);
    let late: Vec<&String> = calls
        .iter()
        .filter(|(started, _, _)| *started > settled)
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    assert!(
        late.is_empty(),
        "calls failed after the failover: {late:#?}"
    );
}

/// The node of `set` at index `i`, as a connection that reads database 8.
async fn db8(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let mut conn = server.async_conn().await;
    let (): () = redis::cmd("SELECT")
        .arg(8)
        .query_async(&mut conn)
        .await
        .expect("SELECT 8");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_under_load_follows_the_master_when_it_is_killed() {
    let set = RedisSentinelSet::start();
    let (runtime, redis) = start(pool_entry(&set, json!({}), json!({}))).await;
    let first = set.master();

    let load = Traffic::start(&redis);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    let killed = blocking(|| set.kill_master());
    assert_eq!(killed, first);
    let promoted = blocking(|| set.wait_for_failover(killed, Duration::from_secs(20)));
    let failed_over_at = Instant::now();
    println!(
        "the sentinels promoted node {promoted} {:?} after the kill",
        failed_over_at - killed_at
    );
    // The load runs on for a while on the new master.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = load.stop().await;
    let acknowledged = calls.iter().filter(|(_, _, r)| r.is_ok()).count() as i64;
    let before_kill = calls
        .iter()
        .filter(|(_, ended, r)| r.is_ok() && *ended < killed_at)
        .count();
    let failures: Vec<&(Instant, Instant, Result<i64, String>)> =
        calls.iter().filter(|(_, _, r)| r.is_err()).collect();
    let resumed = calls
        .iter()
        .filter(|(started, _, r)| r.is_ok() && *started > killed_at)
        .map(|(_, ended, _)| *ended - killed_at)
        .min();
    let last_failure = failures.iter().map(|(_, ended, _)| *ended).max();
    println!(
        "{} calls: {acknowledged} acknowledged ({before_kill} before the kill), {} failed; \
         first success after the kill at {resumed:?}; last failure {:?} after the kill",
        calls.len(),
        failures.len(),
        last_failure.map(|at| at.saturating_duration_since(killed_at)),
    );
    if let Some((_, _, Err(error))) = failures.first() {
        println!("first failure: {error}");
    }
    let resumed = resumed.expect("calls succeeded after the kill");
    assert!(
        resumed < Duration::from_secs(15),
        "commands resumed {resumed:?} after the kill"
    );
    assert_none_failed_after(&calls, failed_over_at);

    // What asynchronous replication lost: acknowledged increments missing on the new master.
    // (A call retried after its connection broke may have run twice, which hides as much.)
    let mut new_master = db8(&set.nodes()[promoted]).await;
    let stored: i64 = new_master.get("counter").await.expect("GET counter");
    println!(
        "the counter on the new master is {stored}; acknowledged {acknowledged}; lost at \
         least {}",
        (acknowledged - stored).max(0)
    );
    let after_failover = calls
        .iter()
        .filter(|(started, _, r)| r.is_ok() && *started > failed_over_at)
        .count() as i64;
    assert!(
        stored >= after_failover,
        "every increment acknowledged after the failover is on the new master: {stored} < \
         {after_failover}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_while_it_runs_is_left_for_the_new_one() {
    let set = RedisSentinelSet::start();
    let (runtime, redis) = start(pool_entry(&set, json!({}), json!({}))).await;
    let first = set.master();
    let _: i64 = redis
        .clone()
        .incr("counter", 1)
        .await
        .expect("INCR on the first master");

    let load = Traffic::start(&redis);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The sentinels swap the roles; the old master keeps running as a replica, so only
    // `+switch-master` or its `READONLY` answers tell the pool.
    let switched_at = Instant::now();
    let promoted = support::manual_failover(&set, 0, first).await;
    let failed_over_at = Instant::now();
    println!(
        "manual failover to node {promoted} took {:?}",
        failed_over_at - switched_at
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = load.stop().await;
    let failed: Vec<&String> = calls
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    println!("{} calls, {} failed", calls.len(), failed.len());
    assert_none_failed_after(&calls, failed_over_at);

    // The pool's connections now reach the new master, and writes land there.
    let before: i64 = db8(&set.nodes()[promoted])
        .await
        .get("counter")
        .await
        .expect("GET on the new master");
    let after: i64 = redis
        .clone()
        .incr("counter", 1)
        .await
        .expect("INCR after the failover");
    assert_eq!(after, before + 1, "the write went to the new master");
    let ours = wait_for_async(
        "the pool's connections to leave the old master",
        Duration::from_secs(10),
        || async {
            let named: Vec<String> = support::client_list(&set.nodes()[first])
                .await
                .into_iter()
                .filter(|line| support::client_field(line, "name") == Some("sentinel_test"))
                .collect();
            if named.is_empty() {
                Ok(())
            } else {
                Err(format!("{named:#?}"))
            }
        },
    )
    .await;
    let () = ours;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sentinel_naming_the_master_is_a_clear_error() {
    let set = RedisSentinelSet::start();
    let addrs = set.sentinel_addrs();

    let entry = pool_entry(&set, json!({"master_name": "nosuch"}), json!({}));
    let error = incr_error(entry, "no master is named `nosuch`").await;
    assert!(error.contains(&format!("pool `{POOL}`")), "{error}");
    assert!(
        error.contains("no sentinel named the master `nosuch`"),
        "{error}"
    );
    for addr in &addrs {
        assert!(
            error.contains(&format!("{addr}: it monitors no master named `nosuch`")),
            "{error}"
        );
    }

    for i in 0..addrs.len() {
        blocking(|| set.sentinel(i).stop());
    }
    let entry = pool_entry(
        &set,
        json!({}),
        json!({"dial_timeout": "1s", "max_retries": -1}),
    );
    let error = incr_error(entry, "every sentinel is down").await;
    assert!(
        error.contains(&format!(
            "no sentinel named the master `{}`",
            set.master_name()
        )),
        "{error}"
    );
    for addr in &addrs {
        assert!(error.contains(addr.as_str()), "{addr} missing: {error}");
    }
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_data_nodes_have_their_own_credentials() {
    let set = RedisSentinelSet::builder()
        .password("data-secret")
        .sentinel_password("sentinel-secret")
        .start();
    let entry = pool_entry(
        &set,
        json!({"password": "sentinel-secret"}),
        json!({"password": "data-secret"}),
    );
    assert_eq!(incr_ok(entry, "INCR through both credentials").await, 1);

    // The data password where the sentinels' belongs: the sentinels refuse, and say so.
    let entry = pool_entry(
        &set,
        json!({"password": "data-secret"}),
        json!({"password": "data-secret", "max_retries": -1}),
    );
    let error = incr_error(entry, "the sentinels refuse the wrong password").await;
    assert!(error.contains("credentials"), "{error}");
}

/// Closes every client connection but `admin`'s own (the kit's `kill_clients` would log in
/// with the password the server had at start).
async fn kill_others(admin: &mut redis::aio::MultiplexedConnection) {
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(admin)
        .await
        .expect("CLIENT KILL");
}

/// The CLIENT ID of the pool's shared connection.
async fn lane_id(redis: &RedisPool) -> redis::RedisResult<i64> {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut redis.clone())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotate_without_dropping_healthy_connections() {
    let server = RedisServer::builder().password("old-secret").start();
    let runtime = support::pool_runtime(
        &server,
        "rotating",
        json!({"password": "old-secret", "max_retries": -1}),
        &[],
    )
    .await;
    let redis = support::pool_named(&runtime, "rotating");
    let first = lane_id(&redis).await.expect("the old password works");

    // The server's password changes: sessions already open stay authenticated.
    let mut admin = server.async_conn().await;
    let (): () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("new-secret")
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET requirepass");
    assert_eq!(lane_id(&redis).await.expect("the open session"), first);

    // New connections are refused while the pool has the old password...
    kill_others(&mut admin).await;
    // The first call may still find the killed socket (a broken pipe, not retried here).
    let refused = wait_for_async(
        "new connections to be refused",
        Duration::from_secs(5),
        || async {
            match lane_id(&redis).await {
                Err(error) if error.to_string().contains("rejected the credentials") => {
                    Ok(error.to_string())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    println!("{refused}");

    // ... and work again as soon as the host hands the new one over, with no backoff left.
    runtime
        .set_credentials("rotating", None, Some("new-secret"))
        .expect("the pool exists");
    let second = lane_id(&redis)
        .await
        .expect("the new password works at once");
    assert_ne!(second, first);

    let unknown = runtime
        .set_credentials("rotatng", None, Some("x"))
        .expect_err("no such pool")
        .to_string();
    assert!(
        unknown.contains("no pool named `rotatng`") && unknown.contains("rotating"),
        "{unknown}"
    );

    // A reload that changes only the password keeps the pool and its open connection.
    let (): () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("third-secret")
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET requirepass");
    let config = json!({ "extra_config": { "redis": { "connection_pools": [{
        "name": "rotating",
        "address": server.addr(),
        "password": "third-secret",
        "max_retries": -1,
    }] } } });
    let report = runtime
        .reload_json(&config.to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{report}");
    assert_eq!(report.pools.credentials, ["rotating"]);
    assert!(report.pools.rebuilt.is_empty(), "{report}");
    assert_eq!(lane_id(&redis).await.expect("the open session"), second);
    kill_others(&mut admin).await;
    // New connections use the reloaded password (the first call may find the killed socket).
    wait_for_async(
        "a new connection with the reloaded password",
        Duration::from_secs(5),
        || async { lane_id(&redis).await.map_err(|e| e.to_string()) },
    )
    .await;
    runtime.shutdown().await;
}

/// Every log line of this test binary at INFO and above, from the first call on: a global
/// subscriber, since the pool's watcher task runs on any worker thread.
fn global_logs() -> &'static support::Logs {
    static LOGS: std::sync::OnceLock<support::Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = support::Logs::default();
        // Another subscriber set first would only hide the lines this test waits for.
        let _ = tracing::subscriber::set_global_default(support::log_subscriber(
            &logs,
            tracing::Level::INFO,
        ));
        logs
    })
}

/// Whether a client of the sentinel at `i` is subscribed to a channel.
async fn has_subscriber(set: &RedisSentinelSet, i: usize) -> bool {
    support::client_list(set.sentinel(i))
        .await
        .iter()
        .any(|line| support::client_field(line, "sub").is_some_and(|n| n != "0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_announcement_still_arrives_after_the_watched_sentinel_dies() {
    let logs = global_logs();
    let set = RedisSentinelSet::start();
    let (runtime, redis) = start(pool_entry(&set, json!({}), json!({}))).await;
    let first = set.master();
    let _: i64 = redis.clone().incr("counter", 1).await.expect("INCR");

    // The pool's watcher subscribes on the first sentinel; that sentinel dies.
    wait_for_async(
        "a subscription on sentinel 0",
        Duration::from_secs(10),
        || async {
            if has_subscriber(&set, 0).await {
                Ok(())
            } else {
                Err("none yet")
            }
        },
    )
    .await;
    blocking(|| set.sentinel(0).stop());
    let watched = wait_for_async(
        "the subscription to move to another sentinel",
        Duration::from_secs(10),
        || async {
            for i in 1..set.sentinel_addrs().len() {
                if has_subscriber(&set, i).await {
                    return Ok(i);
                }
            }
            Err("no sentinel has a subscriber")
        },
    )
    .await;
    println!("the watcher moved to sentinel {watched}");

    // A failover with no command running: only the announcement can tell the pool.
    let promoted = support::manual_failover(&set, watched, first).await;
    let new = format!("new={}", set.nodes()[promoted].addr());
    let line = wait_for_async(
        "the pool to log the announced switch",
        Duration::from_secs(10),
        || async {
            logs.text()
                .lines()
                .find(|line| {
                    line.contains("the sentinels switched the master") && line.contains(&new)
                })
                .map(str::to_owned)
                .ok_or("not logged yet")
        },
    )
    .await;
    println!("{line}");
    let value: i64 = redis
        .clone()
        .incr("counter", 1)
        .await
        .expect("INCR on the new master");
    assert_eq!(
        value, 2,
        "the write went to the promoted node, which has the first one"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_applies_to_the_sentinels_unless_they_have_their_own() {
    let set = RedisSentinelSet::builder()
        .tls(redplug_testkit::ClientAuth::Required)
        .start();
    let files = set.tls().expect("a TLS set").clone();
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 temp path").to_owned();
    let tls = |ca: &std::path::Path| {
        json!({
            "ca_certs": [path(ca)],
            "client_certs": [{ "certificate": path(&files.client_cert), "private_key": path(&files.client_key) }],
            "disable_system_ca_pool": true,
        })
    };
    let (good, wrong) = (tls(&files.ca_cert), tls(&files.other_ca_cert));

    // The pool's `tls` reaches the sentinels and the master.
    let entry = pool_entry(&set, json!({}), json!({"tls": good}));
    assert_eq!(incr_ok(entry, "INCR over TLS").await, 1);

    // The sentinel object's own `tls` is used for the sentinels: with a CA that did not sign
    // their certificates, no sentinel answers, though the pool's own `tls` is right...
    let entry = pool_entry(
        &set,
        json!({"tls": wrong}),
        json!({"tls": good, "max_retries": -1}),
    );
    let error = incr_error(entry, "the sentinels' certificates are not trusted").await;
    assert!(error.contains("no sentinel named the master"), "{error}");

    // ... and with the right one for the sentinels, only the master's certificate fails.
    let entry = pool_entry(
        &set,
        json!({"tls": good}),
        json!({"tls": wrong, "max_retries": -1}),
    );
    let error = incr_error(entry, "the master's certificate is not trusted").await;
    assert!(!error.contains("no sentinel named the master"), "{error}");
    let master = set.nodes()[set.master()].addr();
    assert!(error.contains(&master), "{master} missing: {error}");
}
