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
