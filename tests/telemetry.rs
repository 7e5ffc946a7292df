//! `opentelemetry.disable_traces` and `traces_static_attributes`, observed through a `tracing`
//! subscriber. A test binary of its own: tracing caches per call site whether anyone listens,
//! so a subscriber installed for one test can miss spans while other tests run in parallel.

use std::sync::Arc;

use redis::AsyncCommands;
use redplug::RedisPool;
use redplug_runtime::Runtime;
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

async fn runtime_with(server: &RedisServer, options: Value) -> Runtime {
    let mut pool = json!({ "name": "test", "address": server.addr() });
    if let (Some(target), Value::Object(extra)) = (pool.as_object_mut(), options) {
        target.extend(extra);
    }
    let config = json!({ "extra_config": { "redis": { "connection_pools": [pool] } } });
    Runtime::builder()
        .registrations([])
        .start_json(&config.to_string())
        .await
        .unwrap_or_else(|error| panic!("runtime failed to start: {error}"))
}

fn pool(runtime: &Runtime) -> RedisPool {
    runtime
        .selectors()
        .pool("test")
        .expect("the pool `test` is configured")
}

/// Records the spans opened while it is the global subscriber.
#[derive(Clone, Default)]
struct SpanLog(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanLog {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn commands_are_traced_unless_disabled() {
    use tracing_subscriber::layer::SubscriberExt;
    let server = RedisServer::start();
    let spans = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber here");

    let traced = runtime_with(
        &server,
        json!({ "opentelemetry": { "traces_static_attributes": [{ "key": "team", "value": "edge" }] } }),
    )
    .await;
    let _: i64 = pool(&traced).incr("traced", 1).await.unwrap();
    traced.shutdown().await;
    let seen = spans.0.lock().unwrap().clone();
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
    let quiet = runtime_with(
        &server,
        json!({ "opentelemetry": { "disable_traces": true } }),
    )
    .await;
    let _: i64 = pool(&quiet).incr("traced", 1).await.unwrap();
    quiet.shutdown().await;
    let seen = spans.0.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|span| span.starts_with("redis.")),
        "disable_traces still traced: {seen:?}"
    );
}
