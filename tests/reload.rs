//! Operations against real servers: reloading the config under load (a pool resized, a plugin's
//! limit changed, an endpoint added; no request dropped), reloads that must change nothing,
//! the order of `init` and `shutdown` around a reload, and health that follows the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_runtime::{Endpoint, Runtime, StartupError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

mod support;

use support::{client_field, client_list};

redplug::link!(redplug_example_plugins);

/// Records `init` and `shutdown` in the list `lifecycle`, with its `tag`.
#[derive(Plugin)]
#[plugin(name = "recorder")]
struct Recorder {
    #[redis_pool("ratelimit_counters")]
    redis: RedisPool,
    #[plugin(config)]
    config: RecorderConfig,
}

#[derive(serde::Deserialize, Default)]
struct RecorderConfig {
    tag: String,
}

impl Recorder {
    async fn record(&self, what: &str) -> Result<(), PluginError> {
        let entry = format!("{} {what}", self.config.tag);
        let _: i64 = self.redis.clone().rpush("lifecycle", entry).await?;
        Ok(())
    }
}

impl Middleware for Recorder {
    async fn init(&self) -> Result<(), PluginError> {
        self.record("init").await
    }

    async fn shutdown(&self) {
        if let Err(error) = self.record("shutdown").await {
            panic!("shutdown could not reach Redis: {error}");
        }
    }
}

/// A gateway config with the rate limiter's pool at `server` and `endpoints`.
fn config(server: &RedisServer, pool_size: u32, endpoints: Value) -> String {
    json!({
        "host": ["http://backend.internal"],
        "extra_config": { "redis": { "connection_pools": [
            { "name": "ratelimit_counters", "address": server.addr(), "pool_size": pool_size }
        ] } },
        "endpoints": endpoints,
    })
    .to_string()
}

fn limited(path: &str, limit: u64) -> Value {
    json!({
        "endpoint": path,
        "backend": [{ "url_pattern": path }],
        "extra_config": { "plugin/redplug": {
            "name": ["rate_limit"],
            "rate_limit": { "limit": limit, "window": "1m", "key_prefix": path }
        } },
    })
}

fn find(runtime: &Runtime, path: &str) -> Option<Endpoint> {
    runtime
        .endpoints()
        .iter()
        .find(|endpoint| endpoint.path() == path)
        .cloned()
}

/// One request from `client` through the endpoint at `path` (as the runtime has it now) to a
/// backend that answers 200; its status, or 404 without such an endpoint.
async fn call(runtime: &Runtime, path: &str, client: &str) -> u16 {
    let Some(endpoint) = find(runtime, path) else {
        return 404;
    };
    let request = http::Request::builder()
        .uri(path)
        .header("x-client-id", client)
        .body(Bytes::new())
        .expect("a valid request");
    let response = endpoint
        .chain()
        .run(request, |_| async {
            http::Response::new(Bytes::from("ok"))
        })
        .await;
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_resizes_a_pool_changes_a_limit_and_adds_an_endpoint() {
    let server = RedisServer::start();
    let runtime = Runtime::builder()
        .only_plugins(["rate_limit"])
        .start_json(&config(&server, 4, json!([limited("/a", 1000)])))
        .await
        .unwrap();
    let pool = runtime.selectors().pool("ratelimit_counters").unwrap();

    // Eight tasks send requests, each from a client of its own, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for task in 0..8 {
        let (runtime, stop) = (runtime.clone(), stop.clone());
        let (served, failed) = (served.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match call(&runtime, "/a", &format!("load-{task}-{n}")).await {
                    200 => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = served.load(Ordering::Relaxed);
    let old_clients: Vec<String> = client_list(&server)
        .await
        .iter()
        .filter_map(|line| client_field(line, "id").map(str::to_owned))
        .collect();

    let report = runtime
        .reload_json(&config(
            &server,
            8,
            json!([limited("/a", 3), limited("/b", 1)]),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{report}");
    assert_eq!(report.pools.rebuilt, ["ratelimit_counters"]);
    assert_eq!(report.plugins.rebuilt, ["rate_limit at GET /a"]);
    assert_eq!(report.plugins.added, ["rate_limit at GET /b"]);
    assert_eq!(
        (
            report.endpoints.rebuilt.as_slice(),
            report.endpoints.added.as_slice()
        ),
        (&["GET /a".to_owned()][..], &["GET /b".to_owned()][..])
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!("{before} requests before the reload, {served} in all, {failed} failed");
    assert_eq!(failed, 0, "no request failed across the reload");
    assert!(served > before, "requests went on after the reload");

    // The new settings hold: /a allows 3 per client now, and /b exists with 1.
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(call(&runtime, "/a", "after").await);
    }
    assert_eq!(a, [200, 200, 200, 429]);
    assert_eq!(
        (
            call(&runtime, "/b", "b").await,
            call(&runtime, "/b", "b").await
        ),
        (200, 429)
    );
    // The handle taken before the reload reaches the rebuilt pool.
    assert_eq!(pool.status().max_size, 8);
    let _: i64 = pool
        .clone()
        .incr("through-the-old-handle", 1)
        .await
        .unwrap();
    assert_eq!(runtime.pool_status()[0].max_size, 8);

    // The old pool's connections close once nothing runs on them (the new pool's lanes, as
    // many as the load opened, stay).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let clients: Vec<String> = client_list(&server)
            .await
            .into_iter()
            .filter(|line| {
                client_field(line, "id").is_some_and(|id| old_clients.iter().any(|old| old == id))
            })
            .collect();
        if clients.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open: {clients:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_reload_with_a_bad_config_changes_nothing() {
    let server = RedisServer::start();
    let good = config(&server, 4, json!([limited("/a", 2)]));
    let runtime = Runtime::builder()
        .only_plugins(["rate_limit"])
        .start_json(&good)
        .await
        .unwrap();
    assert_eq!(call(&runtime, "/a", "c").await, 200);

    let mut bad: Value =
        serde_json::from_str(&config(&server, 4, json!([limited("/a", 5)]))).unwrap();
    bad["extra_config"]["redis"]["connection_pools"][0]["dial_timeout"] = json!("5 seconds");
    bad["endpoints"][0]["extra_config"]["plugin/redplug"]["name"] = json!(["rate_limt"]);
    let error = runtime
        .reload_json(&bad.to_string())
        .await
        .expect_err("a bad config");
    println!("{error}");
    let StartupError::Config(errors) = &error else {
        panic!("expected config errors, got {error:?}");
    };
    assert!(
        errors.iter().any(|e| e.path.ends_with("dial_timeout")),
        "{error}"
    );

    // A config whose problem shows only against the plugins: every problem at once too.
    let mut unknown: Value =
        serde_json::from_str(&config(&server, 4, json!([limited("/a", 5)]))).unwrap();
    unknown["endpoints"][0]["extra_config"]["plugin/redplug"]["name"] = json!(["rate_limt"]);
    unknown["endpoints"][0]["extra_config"]["plugin/redplug"]
        .as_object_mut()
        .unwrap()
        .remove("rate_limit");
    let error = runtime
        .reload_json(&unknown.to_string())
        .await
        .expect_err("unknown plugin");
    assert!(
        error.to_string().contains("did you mean `rate_limit`?"),
        "{error}"
    );

    // A pool a plugin requires cannot go away.
    let gone =
        json!({"host": ["http://backend.internal"], "endpoints": [limited("/a", 5)]}).to_string();
    let error = runtime
        .reload_json(&gone)
        .await
        .expect_err("the pool is required");
    assert!(matches!(error, StartupError::Unresolved(_)), "{error:?}");

    // Nothing changed: the old limit still holds, on the old instance's counter.
    assert_eq!(call(&runtime, "/a", "c").await, 200);
    assert_eq!(call(&runtime, "/a", "c").await, 429);
    assert_eq!(runtime.config().endpoints.len(), 1);
    runtime.shutdown().await;
}

#[tokio::test]
async fn new_instances_init_before_the_swap_and_old_ones_shut_down_after() {
    let server = RedisServer::start();
    let with = |tag: &str| {
        config(
            &server,
            4,
            json!([{"endpoint": "/r", "backend": [{"url_pattern": "/r"}],
                "extra_config": {"plugin/redplug": {"name": ["recorder"], "recorder": {"tag": tag}}}},
                {"endpoint": "/same", "backend": [{"url_pattern": "/same"}],
                "extra_config": {"plugin/redplug": {"name": ["recorder"], "recorder": {"tag": "same"}}}}]),
        )
    };
    let runtime = Runtime::builder()
        .only_plugins(["recorder"])
        .start_json(&with("first"))
        .await
        .unwrap();
    let report = runtime.reload_json(&with("second")).await.unwrap();
    assert_eq!(report.plugins.rebuilt, ["recorder at GET /r"]);
    assert_eq!(report.plugins.kept, ["recorder at GET /same"]);

    let mut admin = server.async_conn().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lifecycle: Vec<String> = loop {
        let lifecycle: Vec<String> = admin.lrange("lifecycle", 0, -1).await.unwrap();
        if lifecycle.len() >= 4 || tokio::time::Instant::now() > deadline {
            break lifecycle;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("{lifecycle:#?}");
    assert_eq!(
        lifecycle,
        ["first init", "same init", "second init", "first shutdown"],
        "the new instance starts before the swap, the old one stops after; the unchanged one is kept"
    );
    runtime.shutdown().await;
    let lifecycle: Vec<String> = admin.lrange("lifecycle", 4, -1).await.unwrap();
    assert_eq!(lifecycle, ["same shutdown", "second shutdown"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_follow_the_server() {
    let server = RedisServer::start();
    let runtime = Runtime::builder()
        .only_plugins(["rate_limit"])
        .start_json(&config(&server, 4, json!([limited("/a", 2)])))
        .await
        .unwrap();
    let health = runtime.health().await;
    println!("{}", serde_json::to_string_pretty(&*health).unwrap());
    assert!(health.ready);
    let pool = &health.connections[0];
    assert!(pool.reachable && pool.required && pool.round_trip.is_some());
    assert_eq!(
        (pool.kind, pool.name.as_str()),
        ("pool", "ratelimit_counters")
    );

    server.stop();
    // A request fails meanwhile, which the pool remembers as its last error.
    assert_eq!(call(&runtime, "/a", "down").await, 500);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let health = runtime.health().await;
    println!("{}", serde_json::to_string_pretty(&*health).unwrap());
    assert!(!health.ready, "a required pool does not answer");
    let pool = &health.connections[0];
    assert!(!pool.reachable && pool.error.is_some() && pool.last_error.is_some());

    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if runtime.health().await.ready {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready again");
    }
    runtime.shutdown().await;
}
