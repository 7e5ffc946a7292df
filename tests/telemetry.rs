//! `opentelemetry.disable_traces` and `traces_static_attributes`, observed through a `tracing`
//! subscriber. A test binary of its own: tracing caches per call site whether anyone listens,
//! so a subscriber installed for one test can miss spans while other tests run in parallel.

use redis::AsyncCommands;
use redplug_testkit::RedisServer;
use serde_json::json;

mod support;

use support::{SpanLog, pool_named, pool_runtime};

#[tokio::test]
async fn commands_are_traced_unless_disabled() {
    let server = RedisServer::start();
    let spans = SpanLog::global();

    let traced = pool_runtime(
        &server,
        "test",
        json!({ "opentelemetry": { "traces_static_attributes": [{ "key": "team", "value": "edge" }] } }),
        &[],
    )
    .await;
    let _: i64 = pool_named(&traced, "test").incr("traced", 1).await.unwrap();
    traced.shutdown().await;
    let seen = spans.spans();
    let command = seen
        .iter()
        .find(|span| span.starts_with("redis.command"))
        .unwrap_or_else(|| panic!("no redis.command span in {seen:?}"));
    assert!(command.contains("db.operation=\"INCRBY\""), "{command}");
    assert!(
        command.contains("test") && command.contains("team=edge"),
        "{command}"
    );

    spans.0.lock().unwrap().clear();
    let quiet = pool_runtime(
        &server,
        "test",
        json!({ "opentelemetry": { "disable_traces": true } }),
        &[],
    )
    .await;
    let _: i64 = pool_named(&quiet, "test").incr("traced", 1).await.unwrap();
    quiet.shutdown().await;
    let seen = spans.spans();
    assert!(
        !seen.iter().any(|span| span.starts_with("redis.")),
        "disable_traces still traced: {seen:?}"
    );
}
