//! The example plugins doing their job against a real Redis, run the way a gateway runs them.

use redplug::redis::AsyncCommands;
use redplug::{Request, Response};
use redplug_example_plugins::counter;
use redplug_runtime::Pipeline;
use redplug_runtime::{Runtime, StartupError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

async fn start(server: &RedisServer, plugins: Value) -> Result<Runtime, StartupError> {
    let config = json!({ "extra_config": {
        "redis": { "connection_pools": [
            { "name": "redis_at_eight", "address": server.addr(), "db": 8 },
            { "name": "ratelimit_counters", "address": server.addr(), "db": 1 }
        ] },
        "plugin/redplug": plugins
    } });
    Runtime::from_json(&config.to_string()).await
}

fn request(header: &str, value: &str) -> Request {
    http::Request::builder()
        .uri("/api")
        .header(header, value)
        .body(bytes::Bytes::new())
        .unwrap()
}

/// The backend echoes the caller's `X-Id`, as the seed's backend does.
async fn backend(request: Request) -> Response {
    let mut response = Response::new(bytes::Bytes::from_static(b"ok\n"));
    if let Some(id) = request.headers().get("x-id") {
        response.headers_mut().insert("x-id", id.clone());
    }
    response
}

#[tokio::test]
async fn counter_counts_responses_per_x_id_in_db_8() {
    let server = RedisServer::start();
    let runtime = start(&server, json!({})).await.unwrap();
    let pipeline = Pipeline::new(&runtime, ["counter"]).unwrap();
    for id in ["alice", "bob", "alice"] {
        pipeline.run(request("x-id", id), backend).await;
    }
    // No `X-Id`, no counter.
    pipeline.run(request("x-other", "carol"), backend).await;

    let mut db8 = server.async_conn().await;
    redplug::redis::cmd("SELECT")
        .arg(8)
        .exec_async(&mut db8)
        .await
        .unwrap();
    let alice: i64 = db8.get(counter::key("alice")).await.unwrap();
    let bob: i64 = db8.get(counter::key("bob")).await.unwrap();
    let keys: Vec<String> = db8.keys("test:from-resp-modifier:*").await.unwrap();
    assert_eq!((alice, bob, keys.len()), (2, 1, 2));
    runtime.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_client() {
    let server = RedisServer::start();
    let limits = json!({ "rate_limit": { "limit": 2, "window": "1m", "key_header": "X-Api-Key" } });
    let runtime = start(&server, limits).await.unwrap();
    let pipeline = Pipeline::new(&runtime, ["rate_limit"]).unwrap();

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for key in ["a", "a", "a", "b"] {
        let response = pipeline.run(request("x-api-key", key), backend).await;
        statuses.push(response.status().as_u16());
        if let Some(value) = response.headers().get("retry-after") {
            retry_after = Some(value.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(statuses, [200, 200, 429, 200]);
    let retry_after = retry_after.expect("a 429 carries retry-after");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The window is on the key in Redis, so every gateway sharing the pool shares it.
    let mut db1 = server.async_conn().await;
    redplug::redis::cmd("SELECT")
        .arg(1)
        .exec_async(&mut db1)
        .await
        .unwrap();
    let ttl: i64 = db1.pttl("ratelimit:a").await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_bad_window_stops_startup_with_its_path() {
    let server = RedisServer::start();
    let error = start(&server, json!({ "rate_limit": { "window": "1d" } }))
        .await
        .err()
        .expect("`1d` is not a Go duration");
    let message = error.to_string();
    assert!(
        message.contains("extra_config[\"plugin/redplug\"][\"rate_limit\"].window"),
        "{message}"
    );
    assert!(message.contains("\"d\" is not a unit"), "{message}");

    let error = start(&server, json!({ "rate_limit": { "limt": 5 } }))
        .await
        .err()
        .expect("unknown keys are rejected");
    assert!(
        error.to_string().contains("unknown field `limt`"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// `rate_limit` as a Lua script, with the test kit: a burst, the sliding window, and the faults
// that empty a server's script cache.

use std::time::Duration;

use http::StatusCode;
use redplug::Plugin;
use redplug_example_plugins::RateLimit;
use redplug_testkit::{PluginKit, wait_for_async};

async fn limiter(server: &RedisServer, limits: Value) -> PluginKit<RateLimit> {
    PluginKit::<RateLimit>::builder()
        .pool("ratelimit_counters", server)
        .config(limits)
        .start()
        .await
        .unwrap_or_else(|error| panic!("rate_limit did not start: {error}"))
}

/// The status of one request from `client`, and its `retry-after` in seconds.
async fn attempt(kit: &PluginKit<RateLimit>, client: &str) -> (StatusCode, Option<u64>) {
    let exchange = kit.request(request("x-client-id", client)).await;
    let retry_after = exchange.header("retry-after").map(|s| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("retry-after {s:?} is whole seconds"))
    });
    (exchange.status(), retry_after)
}

#[tokio::test]
async fn rate_limit_script_is_loaded_at_startup() {
    let server = RedisServer::start();
    let kit = limiter(&server, json!({ "limit": 1 })).await;
    let script = RateLimit::SCRIPTS[0];
    assert_eq!(script.field, "admit");
    assert_eq!(script.script.path(), "scripts/rate_limit.lua");
    assert!(server.has_script(script.script.sha1()));
    kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_admits_exactly_the_limit_even_when_concurrent() {
    let server = RedisServer::start();
    let kit = std::sync::Arc::new(limiter(&server, json!({ "limit": 5, "window": "1m" })).await);
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let kit = kit.clone();
            tokio::spawn(async move { attempt(&kit, "burst").await })
        })
        .collect();
    let mut admitted = 0;
    for outcome in burst {
        let (status, retry_after) = outcome.await.unwrap();
        match status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(
                    retry_after,
                    Some(60),
                    "the oldest admitted request is a minute away"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 5);
    // One log entry per admitted request, none for the refused ones.
    let mut db0 = server.async_conn().await;
    let entries: u64 = db0.zcard("ratelimit:burst").await.unwrap();
    assert_eq!(entries, 5);
}

#[tokio::test]
async fn the_window_slides_and_refused_requests_do_not_extend_it() {
    let server = RedisServer::start();
    let kit = limiter(&server, json!({ "limit": 2, "window": "1s" })).await;
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::OK);
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::OK);
    assert_eq!(
        attempt(&kit, "a").await,
        (StatusCode::TOO_MANY_REQUESTS, Some(1))
    );
    // Asking again and again while refused does not push the window back: within about a
    // second of the first request, one is admitted again.
    let started = std::time::Instant::now();
    wait_for_async(
        "a request admitted again",
        Duration::from_secs(3),
        || async {
            match attempt(&kit, "a").await.0 {
                StatusCode::OK => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    kit.shutdown().await;
}

#[tokio::test]
async fn rate_limit_keeps_counting_after_script_flush_and_starts_over_after_a_restart() {
    let server = RedisServer::start();
    let kit = limiter(&server, json!({ "limit": 2, "window": "1m" })).await;
    let sha1 = RateLimit::SCRIPTS[0].script.sha1();
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::OK);

    // The cache is emptied (as on a failover): the window in Redis is intact, the script is
    // sent again by the plugin's first request.
    server.flush_scripts();
    assert!(!server.has_script(sha1));
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::OK);
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        server.has_script(sha1),
        "the fallback left the script in the cache"
    );

    // Connections cut: the pool's retry runs the script on a fresh one.
    server.kill_clients();
    assert_eq!(attempt(&kit, "a").await.0, StatusCode::TOO_MANY_REQUESTS);

    // A restart without persistence loses both the windows and the script.
    server.restart();
    assert!(!server.has_script(sha1));
    let statuses = [
        attempt(&kit, "a").await.0,
        attempt(&kit, "a").await.0,
        attempt(&kit, "a").await.0,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    kit.shutdown().await;
}

#[tokio::test]
async fn each_endpoint_counts_under_its_own_prefix() {
    let server = RedisServer::start();
    let kit = PluginKit::<RateLimit>::builder()
        .pool("ratelimit_counters", &server)
        .config(json!({ "limit": 100 }))
        .at_endpoint()
        .settings(json!({ "limit": 1, "window": "1m", "key_prefix": "users" }))
        .start()
        .await
        .unwrap();
    assert_eq!(attempt(&kit, "alice").await.0, StatusCode::OK);
    assert_eq!(
        attempt(&kit, "alice").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut db0 = server.async_conn().await;
    let entries: u64 = db0.zcard("users:alice").await.unwrap();
    assert_eq!(entries, 1);
    kit.shutdown().await;
}

#[tokio::test]
async fn a_limit_of_zero_refuses_everything_for_a_window() {
    let server = RedisServer::start();
    let kit = limiter(&server, json!({ "limit": 0, "window": "30s" })).await;
    assert_eq!(
        attempt(&kit, "a").await,
        (StatusCode::TOO_MANY_REQUESTS, Some(30))
    );
    kit.shutdown().await;
}
