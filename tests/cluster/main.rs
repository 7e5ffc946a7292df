//! Redis Cluster from config, against real clusters started by the harness: slot routing,
//! redirects, `CROSSSLOT`, KrakenD's cluster selector, failover, and every `clusters[]` option,
//! each checked from the servers' side wherever it can be.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redplug::{RedisCluster as ClusterHandle, RedisPool};
use redplug_runtime::{Runtime, StartupError};
use redplug_testkit::{ClientAuth, RedisCluster, RedisServer, wait_for_async};
use serde_json::{Value, json};

#[path = "../support/mod.rs"]
mod support;

mod failover;
mod options;
mod routing;
mod selector;
mod tls;

use support::SpanLog;

/// No test here may take longer, whatever the servers do.
const TEST_LIMIT: Duration = Duration::from_secs(120);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    SpanLog::global();
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_LIMIT:?}"))
}

/// A `clusters[]` entry called `name` seeded with `addresses`, plus `options`.
fn cluster_config(name: &str, addresses: &[String], options: Value) -> Value {
    let mut config = json!({ "name": name, "addresses": addresses });
    if let (Some(config), Value::Object(options)) = (config.as_object_mut(), options) {
        config.extend(options);
    }
    config
}

async fn try_start(clusters: Vec<Value>) -> Result<Runtime, StartupError> {
    let config = json!({ "extra_config": { "redis": { "clusters": clusters } } });
    Runtime::builder()
        .registrations([])
        .start_json(&config.to_string())
        .await
}

/// The startup error of a config that must not start; `why` says why it must not.
async fn refused_start(clusters: Vec<Value>, why: &str) -> String {
    match try_start(clusters).await {
        Ok(_) => panic!("the runtime started, but must not: {why}"),
        Err(error) => error.to_string(),
    }
}

async fn start(clusters: Vec<Value>) -> Runtime {
    try_start(clusters)
        .await
        .unwrap_or_else(|error| panic!("the runtime did not start: {error}"))
}

fn handle(runtime: &Runtime, name: &str) -> ClusterHandle {
    runtime
        .selectors()
        .cluster(name)
        .unwrap_or_else(|| panic!("the cluster `{name}` is configured"))
}

async fn query<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `GET` through any handle or connection.
async fn get<T: redis::FromRedisValue>(
    con: &(impl redis::aio::ConnectionLike + Clone + Send + Sync),
    key: &str,
) -> redis::RedisResult<T> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut con.clone())
        .await
}

/// The port of the master that serves `key`, asked the way a client would: `CLUSTER KEYSLOT`,
/// then `CLUSTER SLOTS`.
async fn owner_port(admin: &mut MultiplexedConnection, key: &str) -> u16 {
    let slot: i64 = query(admin, &["CLUSTER", "KEYSLOT", key]).await;
    let ranges: Vec<redis::Value> = query(admin, &["CLUSTER", "SLOTS"]).await;
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            continue;
        };
        let (
            Some(redis::Value::Int(first)),
            Some(redis::Value::Int(last)),
            Some(redis::Value::Array(master)),
        ) = (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        if (*first..=*last).contains(&slot)
            && let Some(redis::Value::Int(port)) = master.get(1)
        {
            return u16::try_from(*port).expect("a port");
        }
    }
    panic!("no master serves slot {slot} of `{key}`")
}

/// The `tcp_port` a connection's server reports: which node a handle really talks to.
async fn served_by(node: &RedisPool) -> u16 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut node.clone())
        .await
        .expect("INFO server through the node handle");
    info.lines()
        .find_map(|line| line.strip_prefix("tcp_port:"))
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tcp_port in INFO server: {info}"))
}

/// A key whose master is `master` (an index into the cluster's nodes).
fn key_on(cluster: &RedisCluster, master: usize, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|key| cluster.node_for_key(key) == master)
        .unwrap_or_else(|| panic!("no `{prefix}:N` key on node {master}"))
}

/// Moves the empty slot of `key` to `to`, as a resharding tool does, and waits until every
/// node agrees.
async fn move_slot(cluster: &RedisCluster, key: &str, to: usize) {
    let from = cluster.node_for_key(key);
    let slot = RedisCluster::slot_for_key(key).to_string();
    let mut source = cluster.node(from).async_conn().await;
    let mut target = cluster.node(to).async_conn().await;
    let from_id: String = query(&mut source, &["CLUSTER", "MYID"]).await;
    let to_id: String = query(&mut target, &["CLUSTER", "MYID"]).await;
    let (): () = query(
        &mut target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
    )
    .await;
    let (): () = query(
        &mut source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
    )
    .await;
    for node in cluster.masters() {
        let mut con = cluster.node(node).async_conn().await;
        let (): () = query(&mut con, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).await;
    }
    cluster.wait_for_ok_async().await;
    assert_eq!(cluster.node_for_key(key), to, "the slot of `{key}` moved");
}

/// The error code of `result`, which must be an error.
fn code_of<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> (String, String) {
    let error = result.expect_err("the command must fail");
    (error.code().unwrap_or("").to_owned(), error.to_string())
}

/// `CLIENT LIST` lines of one node.
async fn clients(node: &RedisServer) -> Vec<String> {
    let list: String = query(&mut node.async_conn().await, &["CLIENT", "LIST"]).await;
    list.lines().map(str::to_owned).collect()
}
