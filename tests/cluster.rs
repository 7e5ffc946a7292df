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

mod support;

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

#[tokio::test]
async fn commands_route_by_slot_and_follow_redirects() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        // One seed is enough: the other masters are discovered.
        let seed = vec![cluster.addrs()[0].clone()];
        let runtime = start(vec![
            cluster_config("follow", &seed, json!({})),
            cluster_config("strict", &seed, json!({ "max_redirects": -1 })),
        ])
        .await;
        let follow = handle(&runtime, "follow");
        let strict = handle(&runtime, "strict");

        // Every key lands on the master that serves its slot, across all three masters.
        let mut masters_used = BTreeSet::new();
        for i in 0..30 {
            let key = format!("route:{i}");
            let (): () = follow.clone().set(&key, i).await.unwrap();
            let owner = cluster.node_for_key(&key);
            let stored: Option<i64> = cluster
                .node(owner)
                .async_conn()
                .await
                .get(&key)
                .await
                .unwrap();
            assert_eq!(stored, Some(i), "`{key}` is on node {owner}");
            masters_used.insert(owner);
        }
        assert_eq!(masters_used.len(), 3, "keys spread over every master");
        let value: Option<i64> = get(&strict, "route:7").await.unwrap();
        assert_eq!(value, Some(7));

        // MOVED: the slot changes hands after both clients read the topology.
        let moved = "moved:{m}";
        let from = cluster.node_for_key(moved);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        move_slot(&cluster, moved, to).await;
        let to_port = cluster.node(to).port().to_string();
        let (code, message) = code_of(strict.clone().set::<_, _, ()>(moved, "strict").await);
        assert_eq!(
            code, "MOVED",
            "max_redirects -1 hands the redirect over: {message}"
        );
        assert!(message.contains(&to_port), "{message}");
        let (): () = follow.clone().set(moved, "followed").await.unwrap();
        let stored: Option<String> = cluster
            .node(to)
            .async_conn()
            .await
            .get(moved)
            .await
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some("followed"),
            "the redirect was followed to node {to}"
        );
        // The MOVED taught even the strict client the new owner.
        let seen = wait_for_async(
            "the strict client to learn the new owner",
            Duration::from_secs(10),
            || {
                let strict = strict.clone();
                async move { get::<Option<String>>(&strict, moved).await }
            },
        )
        .await;
        assert_eq!(seen.as_deref(), Some("followed"));

        // ASK: the slot is being migrated and the key is not on the source any more.
        let asked = "ask:{a}";
        let from = cluster.node_for_key(asked);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        let slot = RedisCluster::slot_for_key(asked).to_string();
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
        let (code, message) = code_of(strict.clone().set::<_, _, ()>(asked, "strict").await);
        assert_eq!(code, "ASK", "{message}");
        let (): () = follow.clone().set(asked, "asked").await.unwrap();
        let (stored,): (Option<String>,) = redis::pipe()
            .cmd("ASKING")
            .ignore()
            .get(asked)
            .query_async(&mut target)
            .await
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some("asked"),
            "the ASK was followed to node {to}"
        );
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn multi_key_commands_across_slots_get_crossslot() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let runtime = start(vec![cluster_config("c", &cluster.addrs(), json!({}))]).await;
        let c = handle(&runtime, "c");
        assert_ne!(
            RedisCluster::slot_for_key("a"),
            RedisCluster::slot_for_key("b")
        );

        for args in [
            &["MSET", "a", "1", "b", "2"][..],
            &["MGET", "a", "b"],
            &["DEL", "a", "b"],
            &["EXISTS", "a", "b"],
            &["SUNIONSTORE", "a", "b"],
        ] {
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            let (code, message) = code_of(cmd.query_async::<redis::Value>(&mut c.clone()).await);
            assert_eq!(code, "CROSSSLOT", "{args:?}: {message}");
            assert!(
                message.contains("hash to the same slot"),
                "{args:?}: {message}"
            );
        }
        // Nothing was half written on one of the masters.
        let a: Option<String> = get(&c, "a").await.unwrap();
        assert_eq!(a, None);

        // Keys that share a {hashtag} share a slot, so the same commands work.
        let (): () = c
            .clone()
            .mset(&[
                ("{user:7}:name", "Ada"),
                ("{user:7}:email", "ada@example.com"),
            ])
            .await
            .unwrap();
        let both: Vec<String> = c
            .clone()
            .mget(&["{user:7}:name", "{user:7}:email"])
            .await
            .unwrap();
        assert_eq!(both, ["Ada", "ada@example.com"]);
        let (items, total): (i64, i64) = redis::pipe()
            .atomic()
            .incr("{cart:1}:items", 1)
            .incr("{cart:1}:total", 5)
            .query_async(&mut c.clone())
            .await
            .unwrap();
        assert_eq!((items, total), (1, 5));
        let removed: i64 = c
            .clone()
            .del(&["{user:7}:name", "{user:7}:email"])
            .await
            .unwrap();
        assert_eq!(removed, 2);
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cluster_node_for_key_returns_the_master_serving_the_slot() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let runtime = start(vec![cluster_config("shards", &cluster.addrs(), json!({}))]).await;
        let selectors = runtime.selectors();
        let mut admin = cluster.node(0).async_conn().await;

        let mut by_port: Vec<(u16, RedisPool)> = Vec::new();
        for master in cluster.masters() {
            for n in 0..3 {
                let key = key_on(&cluster, master, &format!("node{master}-{n}"));
                let expected = owner_port(&mut admin, &key).await;
                let node = selectors
                    .cluster_node_for_key("shards", &key)
                    .await
                    .unwrap()
                    .expect("every slot is served");
                assert_eq!(served_by(&node).await, expected, "`{key}`");
                assert!(node.name().starts_with("shards@"), "{}", node.name());
                // Written through the node handle, read straight from that node.
                let (): () = node.clone().set(&key, n).await.unwrap();
                let owner = cluster
                    .nodes()
                    .iter()
                    .find(|server| server.port() == expected)
                    .unwrap();
                let stored: Option<i64> = owner.async_conn().await.get(&key).await.unwrap();
                assert_eq!(stored, Some(n));
                by_port.push((expected, node));
            }
        }
        let ports: BTreeSet<u16> = by_port.iter().map(|(port, _)| *port).collect();
        assert_eq!(ports.len(), 3, "keys on every master");
        // One handle per master, built once.
        for (port, node) in &by_port {
            for (other_port, other) in &by_port {
                assert_eq!(node.same_pool(other), port == other_port);
            }
        }
        assert!(
            selectors
                .cluster_node_for_key("nope", "k")
                .await
                .unwrap()
                .is_none(),
            "an unknown cluster gives None, like KrakenD's selector"
        );

        // The slot changes hands: the old handle gets MOVED, and the next lookup names the new
        // owner with a fresh handle.
        let key = "resharded:{r}";
        let old = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap()
            .unwrap();
        let from = cluster.node_for_key(key);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        move_slot(&cluster, key, to).await;
        let (code, message) = code_of(old.clone().set::<_, _, ()>(key, 1).await);
        assert_eq!(code, "MOVED", "{message}");
        let new = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served_by(&new).await, cluster.node(to).port());
        let (): () = new.clone().set(key, 2).await.unwrap();
        runtime.shutdown().await;
        let error = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn failover_is_survived_without_a_restart() {
    bounded(async {
        let cluster = RedisCluster::start(3, 1);
        let runtime = start(vec![cluster_config("ha", &cluster.addrs(), json!({}))]).await;
        let ha = handle(&runtime, "ha");
        let selectors = runtime.selectors();

        let key = "failover:{f}";
        let old_node = selectors
            .cluster_node_for_key("ha", key)
            .await
            .unwrap()
            .unwrap();
        // Written on a connection of its own, so that WAIT (which counts this connection's
        // writes) proves the replica has it before its master dies.
        let mut own = old_node.checkout().await.unwrap();
        let (): () = redis::cmd("SET")
            .arg(key)
            .arg("before")
            .query_async(&mut own)
            .await
            .unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut own)
            .await
            .unwrap();
        assert_eq!(acked, 1, "the replica acknowledged the write");
        drop(own);
        let killed = cluster.node_for_key(key);
        let survivor = key_on(
            &cluster,
            *cluster.masters().iter().find(|&&m| m != killed).unwrap(),
            "survivor",
        );

        let killed_at = Instant::now();
        cluster.kill_node(killed);
        // Other masters' slots do not notice.
        let (): () = ha.clone().set(&survivor, 1).await.unwrap();
        // The dead master's slots fail until its replica takes over, then work again, with the
        // data the replica had.
        let mut failures = Vec::new();
        let value = loop {
            match get::<Option<String>>(&ha, key).await {
                Ok(value) => break value,
                Err(error) => failures.push(error.to_string()),
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "commands did not recover within 30 s; last errors: {:?}",
                &failures[failures.len().saturating_sub(3)..]
            );
            // Each failed call already spent its retries; this only keeps the loop polite.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let recovered = killed_at.elapsed();
        println!(
            "failover: first successful command {recovered:?} after the master was killed \
             ({} failed calls before)",
            failures.len()
        );
        assert_eq!(value.as_deref(), Some("before"));

        // Once every node agrees on the new master, writes work too.
        cluster.wait_for_ok_async().await;
        let (): () = ha.clone().set(key, "after").await.unwrap();

        // The old node handle reports the dead node, and the selector moves to the new master.
        let error = get::<Option<String>>(&old_node, key).await.unwrap_err();
        assert!(error.to_string().contains("ha@"), "{error}");
        let promoted = cluster.node(cluster.node_for_key(key)).port();
        assert_ne!(promoted, cluster.node(killed).port());
        wait_for_async(
            "the selector to name the promoted replica",
            Duration::from_secs(10),
            || {
                let selectors = selectors.clone();
                async move {
                    let node = selectors
                        .cluster_node_for_key("ha", key)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("no owner")?;
                    let port = served_by(&node).await;
                    if port == promoted {
                        Ok(())
                    } else {
                        Err(format!("still {port}"))
                    }
                }
            },
        )
        .await;
        runtime.shutdown().await;
    })
    .await;
}

/// `INFO errorstats`' count of `code` replies on one node.
async fn error_count(con: &mut MultiplexedConnection, code: &str) -> u64 {
    let info: String = query(con, &["INFO", "errorstats"]).await;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("errorstat_{code}:count=")))
        .and_then(|count| count.split(',').next()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs one failing `GET` through cluster `name`: how many `CLUSTERDOWN` replies the node sent
/// for it, and how long it took.
async fn attempts(
    runtime: &Runtime,
    name: &str,
    con: &mut MultiplexedConnection,
) -> (u64, Duration) {
    let before = error_count(con, "CLUSTERDOWN").await;
    let started = Instant::now();
    let result = get::<Option<String>>(&handle(runtime, name), "flaky:{k}").await;
    let took = started.elapsed();
    let (code, message) = code_of(result);
    assert_eq!(code, "CLUSTERDOWN", "{name}: {message}");
    (error_count(con, "CLUSTERDOWN").await - before, took)
}

#[tokio::test]
async fn retries_and_redirect_budget_ride_out_clusterdown() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let addrs = cluster.addrs();
        let runtime = start(vec![
            cluster_config("impatient", &addrs, json!({ "max_retries": -1, "max_redirects": -1 })),
            cluster_config(
                "measured",
                &addrs,
                json!({ "max_retries": 3, "min_retry_backoff": "100ms", "max_retry_backoff": "100ms", "max_redirects": -1 }),
            ),
            cluster_config(
                "redirects",
                &addrs,
                json!({ "max_retries": -1, "max_redirects": 2, "min_retry_backoff": "10ms", "max_retry_backoff": "20ms" }),
            ),
            cluster_config(
                "patient",
                &addrs,
                json!({ "max_retries": 100, "min_retry_backoff": "20ms", "max_retry_backoff": "20ms", "max_redirects": -1 }),
            ),
        ])
        .await;
        let key = "flaky:{k}";
        for name in ["impatient", "measured", "redirects", "patient"] {
            let (): () = handle(&runtime, name).set(key, name).await.unwrap();
        }
        // The master stops serving the key's slot: it answers CLUSTERDOWN, a transient error.
        let owner = cluster.node_for_key(key);
        let slot = RedisCluster::slot_for_key(key).to_string();
        let mut con = cluster.node(owner).async_conn().await;
        let (): () = query(&mut con, &["CLUSTER", "DELSLOTS", &slot]).await;

        // Each client sends exactly as many attempts as its config allows, with its backoff.
        let (sent, _) = attempts(&runtime, "impatient", &mut con).await;
        assert_eq!(sent, 1, "max_retries -1 and max_redirects -1: one attempt");
        let (sent, took) = attempts(&runtime, "measured", &mut con).await;
        assert_eq!(sent, 4, "max_retries 3: four attempts");
        assert!(took >= Duration::from_millis(290), "three 100ms backoffs, took {took:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        let (sent, _) = attempts(&runtime, "redirects", &mut con).await;
        assert_eq!(sent, 3, "max_redirects 2 is redis-rs' budget: three attempts");

        // A patient client is still retrying when the slot comes back, and succeeds.
        let before = error_count(&mut con, "CLUSTERDOWN").await;
        let patient = handle(&runtime, "patient");
        let pending = tokio::spawn(async move { get::<Option<String>>(&patient, key).await });
        wait_for_async("the patient client to fail twice", Duration::from_secs(10), || {
            let mut con = con.clone();
            async move {
                let seen = error_count(&mut con, "CLUSTERDOWN").await - before;
                if seen >= 2 { Ok(()) } else { Err(format!("{seen} failures so far")) }
            }
        })
        .await;
        let (): () = query(&mut con, &["CLUSTER", "ADDSLOTS", &slot]).await;
        let value = pending.await.unwrap().expect("the retries outlasted the outage");
        assert_eq!(value.as_deref(), Some("patient"));
        runtime.shutdown().await;
    })
    .await;
}

/// `CLIENT LIST` lines of one node.
async fn clients(node: &RedisServer) -> Vec<String> {
    let list: String = query(&mut node.async_conn().await, &["CLIENT", "LIST"]).await;
    list.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn every_cluster_option_is_honoured() {
    let spans = SpanLog::global();
    // Node handles' maintenance publishes gauges from tasks on this (the test's only) thread.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    bounded(async {
        let cluster = RedisCluster::builder()
            .password("s3cret")
            .acl_user("app", "app-pass")
            .start();
        let addrs = cluster.addrs();
        let login = json!({ "user_name": "app", "password": "app-pass" });
        let mut options = json!({
            "client_name": "redplug-sessions",
            "pool_size": 2,
            "pool_timeout": "300ms",
            "min_idle_conns": 1,
            "opentelemetry": { "traces_static_attributes": [{ "key": "team", "value": "edge" }] },
        });
        options
            .as_object_mut()
            .unwrap()
            .extend(login.as_object().unwrap().clone());
        let mut quiet =
            json!({ "opentelemetry": { "disable_traces": true, "disable_metrics": true } });
        quiet
            .as_object_mut()
            .unwrap()
            .extend(login.as_object().unwrap().clone());
        let runtime = start(vec![
            cluster_config("sessions", &addrs, options),
            cluster_config("quiet", &addrs, quiet),
        ])
        .await;
        let sessions = handle(&runtime, "sessions");

        // user_name + password: ACL login as `app`; client_name: on every node's CLIENT LIST.
        let whoami: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut sessions.clone())
            .await
            .unwrap();
        assert_eq!(whoami, "app");
        for node in cluster.nodes() {
            let named = clients(node).await;
            assert!(
                named
                    .iter()
                    .any(|c| c.contains("name=redplug-sessions") && c.contains("user=app")),
                "{} has no client named redplug-sessions logged in as app: {named:#?}",
                node.addr()
            );
        }

        // pool_size bounds exclusive connections; pool_timeout bounds the wait for one.
        let mut first = sessions.checkout().await.unwrap();
        let second = sessions.checkout().await.unwrap();
        let waited = Instant::now();
        let error = sessions.checkout().await.unwrap_err().to_string();
        let waited = waited.elapsed();
        assert!(
            error.contains("sessions") && error.contains("pool_timeout"),
            "{error}"
        );
        assert!(
            waited >= Duration::from_millis(280) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        drop(second);
        let third = sessions
            .checkout()
            .await
            .expect("a returned connection is handed out again");
        drop(third);

        // An exclusive connection runs blocking commands, and carries the client name too.
        let blocked = tokio::spawn(async move {
            let popped: (String, String) = redis::cmd("BLPOP")
                .arg("jobs")
                .arg(0)
                .query_async(&mut first)
                .await
                .unwrap();
            popped
        });
        let owner = cluster.node(cluster.node_for_key("jobs"));
        wait_for_async("BLPOP to block", Duration::from_secs(10), || async {
            let list = clients(owner).await;
            if list
                .iter()
                .any(|c| c.contains("cmd=blpop") && c.contains("name=redplug-sessions"))
            {
                Ok(())
            } else {
                Err("not blocked yet")
            }
        })
        .await;
        let (): () = sessions.clone().rpush("jobs", "job-1").await.unwrap();
        assert_eq!(
            blocked.await.unwrap(),
            ("jobs".to_owned(), "job-1".to_owned())
        );

        // Node handles are pools with the cluster's pool_size, name and credentials.
        let node = runtime
            .selectors()
            .cluster_node_for_key("sessions", "jobs")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node.status().max_size, 2);
        // min_idle_conns: maintenance keeps one idle connection beside the shared one.
        wait_for_async("an idle node connection", Duration::from_secs(10), || {
            let status = node.status();
            async move {
                if status.idle >= 1 {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            }
        })
        .await;
        let whoami: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut node.clone())
            .await
            .unwrap();
        assert_eq!(whoami, "app");

        // opentelemetry: a span per command, with the static attributes, unless disabled.
        let (): () = sessions.clone().set("traced", 1).await.unwrap();
        let (): () = handle(&runtime, "quiet").set("untraced", 1).await.unwrap();
        let (): () = node.clone().set("{jobs}:traced", 1).await.unwrap();
        let seen = spans.spans();
        let ours: Vec<&String> = seen
            .iter()
            .filter(|s| s.starts_with("redis.command"))
            .collect();
        assert!(
            ours.iter().any(|s| s.contains("redis.pool=sessions ")
                && s.contains("\"SET\"")
                && s.contains("team=edge")),
            "{ours:#?}"
        );
        assert!(
            ours.iter().any(|s| s.contains("redis.pool=sessions@")),
            "node handles are traced: {ours:#?}"
        );
        assert!(
            !ours.iter().any(|s| s.contains("redis.pool=quiet")),
            "disable_traces: {ours:#?}"
        );
        // ... and connection gauges for node handles, unless disabled.
        let quiet_node = runtime
            .selectors()
            .cluster_node_for_key("quiet", "jobs")
            .await
            .unwrap()
            .unwrap();
        let (): () = quiet_node.clone().set("{jobs}:quiet", 1).await.unwrap();
        let gauges = wait_for_async("node pool gauges", Duration::from_secs(10), || {
            let snapshot = snapshotter.snapshot().into_vec();
            async move {
                let pools: BTreeSet<String> = snapshot
                    .iter()
                    .flat_map(|(key, ..)| {
                        key.key()
                            .labels()
                            .map(|l| format!("{}={}", l.key(), l.value()))
                            .collect::<Vec<_>>()
                    })
                    .filter(|label| label.starts_with("pool="))
                    .collect();
                if pools.iter().any(|p| p.contains("sessions@")) {
                    Ok(pools)
                } else {
                    Err(format!("{pools:?}"))
                }
            }
        })
        .await;
        assert!(
            !gauges.iter().any(|p| p.contains("quiet@")),
            "disable_metrics: {gauges:?}"
        );

        // Wrong credentials stop the runtime at startup, naming the cluster and the cause.
        let error = refused_start(
            vec![cluster_config(
                "locked",
                &addrs,
                json!({ "user_name": "app", "password": "wrong" }),
            )],
            "wrong credentials must not start",
        )
        .await;
        assert!(error.contains("cluster `locked`"), "{error}");
        assert!(
            error.contains("rejected the credentials") && error.contains("user_name"),
            "{error}"
        );
        println!("wrong credentials: {error}");

        // Shutdown closes every connection this runtime opened on every node.
        runtime.shutdown().await;
        let error = get::<Option<String>>(&sessions, "traced")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
        for node in cluster.nodes() {
            wait_for_async(
                "our connections to close",
                Duration::from_secs(10),
                || async {
                    let left = clients(node)
                        .await
                        .into_iter()
                        .filter(|c| c.contains("name=redplug-sessions"))
                        .count();
                    if left == 0 {
                        Ok(())
                    } else {
                        Err(format!("{left} still open on {}", node.addr()))
                    }
                },
            )
            .await;
        }
    })
    .await;
}

#[tokio::test]
async fn startup_without_a_reachable_seed_fails_within_dial_timeout() {
    bounded(async {
        // Nothing listens here: refused at once.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        // This accepts connections and never answers: only dial_timeout ends the wait.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let started = Instant::now();
        let error = refused_start(
            vec![cluster_config(
                "nowhere",
                &[refused.clone(), silent_addr.clone()],
                json!({ "dial_timeout": "300ms" }),
            )],
            "no seed answers",
        )
        .await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(280),
            "the silent seed got its dial_timeout: {took:?}"
        );
        assert!(
            took < Duration::from_millis(300) + Duration::from_secs(2),
            "{took:?}"
        );
        assert!(error.contains("cluster `nowhere`"), "{error}");
        assert!(
            error.contains(&refused) && error.contains(&silent_addr),
            "every seed is named: {error}"
        );
        assert!(error.contains("dial_timeout"), "{error}");
        println!("no reachable seed: {error}");
        drop(silent);

        // A seed that is a plain server, not a cluster node: the server's answer is passed on.
        let plain = RedisServer::start();
        let error = refused_start(
            vec![cluster_config("notacluster", &[plain.addr()], json!({}))],
            "a plain server is no cluster",
        )
        .await;
        assert!(
            error.contains("cluster `notacluster`") && error.contains("cluster support disabled"),
            "{error}"
        );
    })
    .await;
}

/// A one-node cluster that only speaks TLS (client certificates required, TLS 1.3 only).
fn tls_cluster() -> RedisServer {
    let bus = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::builder()
        .tls(ClientAuth::Required)
        .arg("--cluster-enabled", "yes")
        .arg("--cluster-port", bus.to_string())
        // Announce the TLS port in CLUSTER SLOTS (the plain port is 0).
        .arg("--tls-cluster", "yes")
        .arg("--tls-protocols", "TLSv1.3")
        .start();
    let mut con = server.conn();
    let (): () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query(&mut con)
        .unwrap();
    redplug_testkit::wait_for("the one-node cluster", Duration::from_secs(10), || {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if info.contains("cluster_state:ok") {
            Ok(())
        } else {
            Err(info)
        }
    });
    server
}

#[tokio::test]
async fn tls_settings_apply_to_every_cluster_connection() {
    bounded(async {
        let server = tls_cluster();
        let files = server.tls().unwrap().clone();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let client_cert = json!([{ "certificate": path(&files.client_cert), "private_key": path(&files.client_key) }]);
        let addrs = [server.addr()];

        let runtime = start(vec![
            cluster_config(
                "verified",
                &addrs,
                json!({ "tls": { "ca_certs": [path(&files.ca_cert)], "client_certs": client_cert, "disable_system_ca_pool": true, "min_version": "TLS13" } }),
            ),
            cluster_config(
                "insecure",
                &addrs,
                json!({ "tls": { "allow_insecure_connections": true, "disable_system_ca_pool": true, "client_certs": client_cert } }),
            ),
        ])
        .await;
        for name in ["verified", "insecure"] {
            let handle = handle(&runtime, name);
            let (): () = handle.clone().set(name, 1).await.unwrap();
            let node = runtime.selectors().cluster_node_for_key(name, name).await.unwrap().unwrap();
            let value: Option<i64> = get(&node, name).await.unwrap();
            assert_eq!(value, Some(1), "{name}: the node handle speaks TLS too");
            let mut exclusive = handle.checkout().await.unwrap();
            let value: Option<i64> = redis::cmd("GET").arg(name).query_async(&mut exclusive).await.unwrap();
            assert_eq!(value, Some(1), "{name}: exclusive connections speak TLS too");
        }
        runtime.shutdown().await;

        let refused = |name: &'static str, tls: Value| {
            let addrs = addrs.clone();
            async move {
                let config = cluster_config(name, &addrs, json!({ "tls": tls, "dial_timeout": "2s" }));
                refused_start(vec![config], name).await
            }
        };
        // Only an unrelated CA is trusted (the system's CAs are off): the server is refused.
        let error = refused(
            "untrusted",
            json!({ "ca_certs": [path(&files.other_ca_cert)], "client_certs": client_cert, "disable_system_ca_pool": true }),
        )
        .await;
        assert!(error.contains("cluster `untrusted`") && error.contains(&server.addr()), "{error}");
        assert!(error.to_lowercase().contains("certificate"), "{error}");
        // max_version TLS 1.2 against a TLS 1.3-only server.
        let error = refused(
            "old",
            json!({ "ca_certs": [path(&files.ca_cert)], "client_certs": client_cert, "max_version": "TLS12" }),
        )
        .await;
        assert!(error.contains("cluster `old`") && error.to_lowercase().contains("version"), "{error}");
        // The server wants a client certificate.
        let error = refused("anonymous", json!({ "ca_certs": [path(&files.ca_cert)] })).await;
        assert!(error.contains("cluster `anonymous`") && error.contains(&server.addr()), "{error}");
        println!("TLS refusals, last one: {error}");
    })
    .await;
}

/// A master with a replica is killed while 16 tasks keep writing, half of them to its slots.
/// With retries spanning the failover, writes to the other masters never fail; writes to its
/// slots resume after the promotion without restarting anything, and the gap is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_resumes_the_dead_masters_slots() {
    bounded(async {
        let cluster = RedisCluster::start(3, 1);
        let runtime = start(vec![cluster_config(
            "ha",
            &cluster.addrs(),
            // While a master is down and its replica not yet promoted, every node answers
            // CLUSTERDOWN (full slot coverage is required by default): retries span that gap.
            json!({ "max_retries": 12, "min_retry_backoff": "50ms", "max_retry_backoff": "500ms" }),
        )])
        .await;
        let ha = handle(&runtime, "ha");
        let doomed = cluster.masters()[0];
        let spared = cluster.masters()[1];
        let doomed_key = key_on(&cluster, doomed, "load-doomed");
        let spared_key = key_on(&cluster, spared, "load-spared");

        let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..16 {
            let ha = ha.clone();
            let key = if task % 2 == 0 {
                doomed_key.clone()
            } else {
                spared_key.clone()
            };
            let (killed_at, stop) = (killed_at.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                // (successes, failures, first success after the kill)
                let (mut ok, mut failed, mut resumed) = (0u64, 0u64, None);
                let mut last_error = String::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match ha.clone().incr::<_, _, i64>(&key, 1).await {
                        Ok(_) => {
                            ok += 1;
                            if let (None, Some(kill)) = (resumed, killed_at.get()) {
                                resumed = Some(kill.elapsed());
                            }
                        }
                        Err(error) => {
                            failed += 1;
                            last_error = error.to_string();
                        }
                    }
                }
                (key, ok, failed, resumed, last_error)
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.kill_node(doomed);
        let _ = killed_at.set(Instant::now());
        // Run until every task on the dead master's slots has written again, plus a moment.
        wait_for_async(
            "writes to the dead master's slots resume",
            Duration::from_secs(30),
            || {
                let ha = ha.clone();
                let key = doomed_key.clone();
                async move { ha.clone().incr::<_, _, i64>(&key, 0).await.map(|_| ()) }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);

        let mut doomed_gap = Duration::ZERO;
        let mut doomed_failures = 0;
        for task in tasks {
            let (key, ok, failed, resumed, last_error) = task.await.unwrap();
            let resumed =
                resumed.unwrap_or_else(|| panic!("a task on {key} never wrote after the kill"));
            if key == doomed_key {
                doomed_gap = doomed_gap.max(resumed);
                doomed_failures += failed;
            } else {
                assert_eq!(
                    failed, 0,
                    "writes to a surviving master failed during the failover: {last_error}"
                );
            }
            assert!(ok > 0);
        }
        println!(
            "failover under load: the dead master's slots took writes again {doomed_gap:?} after \
             the kill ({doomed_failures} calls to them failed beyond their retries); the surviving \
             master's writers saw no failure"
        );
        runtime.shutdown().await;
    })
    .await;
}
