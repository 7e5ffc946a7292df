//! `#[redis_script]` against real servers: loaded into every server a plugin holds at startup
//! (every master of a cluster), run with `EVALSHA` on a pool, a cluster and an exclusive
//! connection, found again after `SCRIPT FLUSH` and a server restart, and a script that does
//! not compile stopping startup with what to fix.

use std::time::Duration;

use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_runtime::{Runtime, StartupError};
use redplug_testkit::{RedisCluster as TestCluster, RedisServer};
use serde_json::{Value, json};

#[derive(Plugin)]
#[plugin(name = "pool_adder")]
struct PoolAdder {
    #[redis_pool("counters")]
    redis: RedisPool,
    #[redis_script("tests/scripts/add.lua")]
    add: RedisScript,
}

impl Middleware for PoolAdder {}

#[derive(Plugin)]
#[plugin(name = "cluster_adder")]
struct ClusterAdder {
    #[redis_cluster("shared")]
    cluster: RedisCluster,
    #[redis_script("tests/scripts/add.lua")]
    add: RedisScript,
}

impl Middleware for ClusterAdder {}

/// Never serves a request: startup refuses its second script.
#[allow(dead_code)]
#[derive(Plugin)]
#[plugin(name = "broken")]
struct Broken {
    #[redis_pool("counters")]
    redis: RedisPool,
    #[redis_script("tests/scripts/add.lua")]
    fine: RedisScript,
    #[redis_script("tests/scripts/broken.lua")]
    typo: RedisScript,
}

impl Middleware for Broken {}

/// Records that `init` ran, to show a refused script stops startup before it.
#[derive(Plugin)]
#[plugin(name = "init_after_scripts")]
struct InitAfterScripts {
    #[redis_pool("counters")]
    redis: RedisPool,
    #[redis_script("tests/scripts/add.lua")]
    add: RedisScript,
}

impl Middleware for InitAfterScripts {
    async fn init(&self) -> Result<(), PluginError> {
        // The script is already there: `init` may use it.
        let exists: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(self.add.sha1())
            .query_async(&mut self.redis.clone())
            .await?;
        if exists != [true] {
            return Err(PluginError::new("the script was not loaded before init"));
        }
        let _: i64 = self.redis.clone().incr("init:ran", 1).await?;
        Ok(())
    }
}

fn pool_config(server: &RedisServer, endpoints: Value) -> String {
    json!({
        "extra_config": { "redis": { "connection_pools": [
            { "name": "counters", "address": server.addr() }
        ] } },
        "endpoints": endpoints
    })
    .to_string()
}

async fn start(plugins: &[&str], json: &str) -> Result<Runtime, StartupError> {
    Runtime::builder()
        .only_plugins(plugins.iter().copied())
        .start_json(json)
        .await
}

async fn script_exists(server: &RedisServer, sha1: &str) -> bool {
    let mut admin = server.async_conn().await;
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(sha1)
        .query_async(&mut admin)
        .await
        .expect("SCRIPT EXISTS");
    exists == [true]
}

async fn flush_scripts(server: &RedisServer) {
    let mut admin = server.async_conn().await;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut admin)
        .await
        .expect("SCRIPT FLUSH");
}

/// How many `SCRIPT LOAD`s the server has run.
async fn script_loads(server: &RedisServer) -> u64 {
    let mut admin = server.async_conn().await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut admin)
        .await
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_script|load:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_script_on_a_pool_is_loaded_at_startup_and_survives_script_flush_and_a_restart() {
    let server = RedisServer::start();
    let runtime = start(&["pool_adder"], &pool_config(&server, json!([])))
        .await
        .unwrap();
    let adder = runtime
        .get::<PoolAdder>()
        .expect("built at the service level");
    assert!(
        script_exists(&server, adder.add.sha1()).await,
        "loaded before the first request"
    );

    let mut redis = adder.redis.clone();
    let first: i64 = adder
        .add
        .key("hits")
        .arg(2)
        .invoke(&mut redis)
        .await
        .unwrap();
    assert_eq!(first, 2);

    flush_scripts(&server).await;
    assert!(!script_exists(&server, adder.add.sha1()).await);
    let after_flush: i64 = adder
        .add
        .key("hits")
        .arg(3)
        .invoke(&mut redis)
        .await
        .unwrap();
    assert_eq!(after_flush, 5, "NOSCRIPT falls back to the source");
    assert!(
        script_exists(&server, adder.add.sha1()).await,
        "and the fallback left it in the cache"
    );

    // A restart loses data and scripts alike (no persistence here).
    server.restart();
    assert!(!script_exists(&server, adder.add.sha1()).await);
    let after_restart: i64 = adder
        .add
        .key("hits")
        .arg(4)
        .invoke(&mut redis)
        .await
        .unwrap();
    assert_eq!(after_restart, 4);
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_script_runs_on_an_exclusive_connection_after_script_flush() {
    let server = RedisServer::start();
    let runtime = start(&["pool_adder"], &pool_config(&server, json!([])))
        .await
        .unwrap();
    let adder = runtime.get::<PoolAdder>().unwrap();
    let mut connection = adder.redis.checkout().await.unwrap();
    let first: i64 = adder
        .add
        .key("k")
        .arg(1)
        .invoke(&mut connection)
        .await
        .unwrap();
    flush_scripts(&server).await;
    let second: i64 = adder
        .add
        .key("k")
        .arg(1)
        .invoke(&mut connection)
        .await
        .unwrap();
    assert_eq!((first, second), (1, 2));
    // Errors the script raises come back as errors: INCRBY on a string.
    let _: () = connection.set("text", "not a number").await.unwrap();
    let error = adder
        .add
        .key("text")
        .arg(1)
        .invoke::<i64>(&mut connection)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not an integer"), "{error}");
    drop(connection);
    runtime.shutdown().await;
}

#[tokio::test]
async fn each_server_gets_each_script_once_however_many_instances_share_it() {
    let server = RedisServer::start();
    let listed = |path: &str| {
        json!({"endpoint": path, "extra_config": {"plugin/redplug": {"name": ["pool_adder"]}},
               "backend": [{"host": ["http://127.0.0.1:9"], "url_pattern": "/"}]})
    };
    let json = pool_config(&server, json!([listed("/a"), listed("/b"), listed("/c")]));
    let runtime = start(&["pool_adder"], &json).await.unwrap();
    assert_eq!(runtime.endpoints().len(), 3);
    assert_eq!(script_loads(&server).await, 1);
    runtime.shutdown().await;
}

#[tokio::test]
async fn scripts_are_loaded_before_init_runs() {
    let server = RedisServer::start();
    let runtime = start(&["init_after_scripts"], &pool_config(&server, json!([])))
        .await
        .unwrap();
    let mut admin = server.async_conn().await;
    let ran: i64 = admin.get("init:ran").await.unwrap();
    assert_eq!(ran, 1);
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_script_that_does_not_compile_stops_startup_naming_plugin_field_file_and_server_reply() {
    let server = RedisServer::start();
    let error = start(&["broken"], &pool_config(&server, json!([])))
        .await
        .err()
        .expect("a Lua syntax error must stop startup");
    assert!(matches!(error, StartupError::Script { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        "plugin `broken` (service)",
        "field `typo`",
        "tests/scripts/broken.lua",
        "refused by pool `counters`",
        "ERR Error compiling script",
        "fix the Lua in tests/scripts/broken.lua",
    ] {
        assert!(message.contains(part), "missing {part:?} in: {message}");
    }
    println!("{message}");
}

#[tokio::test]
async fn a_server_that_is_down_at_startup_does_not_stop_it() {
    let server = RedisServer::start();
    let json = pool_config(&server, json!([]));
    server.stop();
    let runtime = start(&["pool_adder"], &json)
        .await
        .expect("pools connect lazily: a server that is down gets its scripts on their first use");
    server.restart();
    let adder = runtime.get::<PoolAdder>().unwrap();
    let mut redis = adder.redis.clone();
    let total: i64 = adder.add.key("n").arg(7).invoke(&mut redis).await.unwrap();
    assert_eq!(total, 7);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_on_a_cluster_is_loaded_into_every_master_and_runs_where_its_key_lives() {
    let cluster = TestCluster::start(3, 0);
    let json = json!({ "extra_config": { "redis": { "clusters": [
        { "name": "shared", "addresses": cluster.addrs() }
    ] } } })
    .to_string();
    let runtime = start(&["cluster_adder"], &json).await.unwrap();
    let adder = runtime.get::<ClusterAdder>().unwrap();
    let sha1 = adder.add.sha1();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for &master in &masters {
        assert!(
            script_exists(cluster.node(master), sha1).await,
            "not loaded on master {master}"
        );
    }

    let mut handle = adder.cluster.clone();
    for key in ["user:1", "user:2", "{tenant}:a", "order:77"] {
        let total: i64 = adder.add.key(key).arg(5).invoke(&mut handle).await.unwrap();
        assert_eq!(total, 5, "{key}");
        let mut owner = cluster.node(cluster.node_for_key(key)).async_conn().await;
        let stored: i64 = owner.get(key).await.unwrap();
        assert_eq!(stored, 5, "{key} lives on the master that owns its slot");
    }

    for &master in &masters {
        flush_scripts(cluster.node(master)).await;
    }
    let total: i64 = adder
        .add
        .key("user:1")
        .arg(1)
        .invoke(&mut handle)
        .await
        .unwrap();
    assert_eq!(total, 6, "NOSCRIPT on a cluster falls back too");

    // The same through a connection of its own.
    let mut own = adder.cluster.checkout().await.unwrap();
    let total: i64 = tokio::time::timeout(
        Duration::from_secs(10),
        adder.add.key("user:2").arg(1).invoke(&mut own),
    )
    .await
    .expect("answers")
    .unwrap();
    assert_eq!(total, 6);
    drop(own);
    runtime.shutdown().await;
}
