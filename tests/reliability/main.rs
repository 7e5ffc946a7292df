//! Reliability under the faults production inflicts on Redis: restarts under load, long
//! outages, server-side kills, a full server, a slow server, and shutting down mid-load.
//!
//! Every test runs against real `redis-server` processes, drives a `RedisPool` that the runtime
//! injected into a plugin (as a gateway would), is bounded in time, and prints what it measured.
//! Waits for a condition poll with a deadline; the only fixed sleeps pace the load itself.
//!
//! Cluster failover under load lives with the cluster tests (`tests/cluster/failover.rs`).

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

#[path = "../support/mod.rs"]
mod support;

mod kills;
mod maxclients;
mod outage;
mod restart;
mod shutdown;
mod silent;
mod slow;

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

#[derive(Default)]
struct OutageLog {
    succeeded: usize,
    failed: usize,
    slowest_failure: Duration,
    /// The slowest call, whatever it got.
    slowest: Duration,
    /// Distinct error messages (with the port masked) and how often each was seen.
    errors: BTreeMap<String, usize>,
}

/// Calls issued at a steady rate whether or not earlier ones finished, as a gateway's traffic
/// arrives: [`PER_TICK`] every [`EVERY`], 400 a second.
struct OpenLoop {
    log: Arc<Mutex<OutageLog>>,
    in_flight: Arc<AtomicUsize>,
    issued: usize,
    most_in_flight: usize,
    /// The most tasks seen waiting for a connection, and connections seen open.
    most_waiting: usize,
    most_open: usize,
}

const EVERY: Duration = Duration::from_millis(20);
const PER_TICK: usize = 8;

impl OpenLoop {
    /// Reads `key` through `redis` at the steady rate until `done` says so, recording every
    /// outcome; error messages have `port` masked as `PORT`.
    async fn run(
        redis: &RedisPool,
        key: &'static str,
        port: u16,
        mut done: impl FnMut() -> bool,
    ) -> OpenLoop {
        let mut open = OpenLoop {
            log: Arc::default(),
            in_flight: Arc::default(),
            issued: 0,
            most_in_flight: 0,
            most_waiting: 0,
            most_open: 0,
        };
        let port = port.to_string();
        let mut ticker = tokio::time::interval(EVERY);
        while !done() {
            ticker.tick().await;
            for _ in 0..PER_TICK {
                let (redis, in_flight, log, port) = (
                    redis.clone(),
                    open.in_flight.clone(),
                    open.log.clone(),
                    port.clone(),
                );
                in_flight.fetch_add(1, Ordering::SeqCst);
                open.issued += 1;
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = read(&redis, key).await;
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
                    log.slowest = log.slowest.max(took);
                    drop(log);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
            let status = redis.status();
            open.most_in_flight = open
                .most_in_flight
                .max(open.in_flight.load(Ordering::SeqCst));
            open.most_waiting = open.most_waiting.max(status.waiting);
            open.most_open = open.most_open.max(status.size);
        }
        open
    }

    /// Waits for every call issued to end.
    async fn settle(&self) {
        wait_for_async("every call to end", Duration::from_secs(10), || async {
            match self.in_flight.load(Ordering::SeqCst) {
                0 => Ok(()),
                n => Err(format!("{n} in flight")),
            }
        })
        .await;
    }
}
