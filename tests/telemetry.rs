//! Spans and metrics of real commands: OpenTelemetry's database conventions on spans (seen
//! by a plain `tracing` layer and exported through OpenTelemetry's SDK, each static attribute
//! an attribute of its own), `disable_traces`, and the operation histogram, error counter and
//! connection gauges through a `metrics` recorder. A test binary of its own, with one global
//! subscriber and one global recorder: tracing caches per call site whether anyone listens, so
//! a subscriber installed for one test could miss spans while other tests run in parallel.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use redis::AsyncCommands;
use redplug_testkit::RedisServer;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

mod support;

use support::{SpanLog, pool_named, pool_runtime};

struct Observed {
    spans: SpanLog,
    exported: InMemorySpanExporter,
    provider: SdkTracerProvider,
    metrics: Snapshotter,
}

/// The binary's subscriber (a span log and an OpenTelemetry layer exporting to memory) and
/// its metrics recorder, installed once.
fn observed() -> &'static Observed {
    static OBSERVED: OnceLock<Observed> = OnceLock::new();
    OBSERVED.get_or_init(|| {
        let spans = SpanLog::default();
        let exported = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let tracer = provider.tracer("redplug-tests");
        let subscriber = tracing_subscriber::registry()
            .with(spans.clone())
            .with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        let recorder = DebuggingRecorder::new();
        let metrics = recorder.snapshotter();
        recorder
            .install()
            .expect("no other global recorder in this test binary");
        Observed {
            spans,
            exported,
            provider,
            metrics,
        }
    })
}

#[tokio::test]
async fn commands_are_spans_by_the_database_conventions_unless_disabled() {
    let observed = observed();
    let server = RedisServer::start();
    let traced = pool_runtime(
        &server,
        "traced_pool",
        json!({ "db": 3, "opentelemetry": { "traces_static_attributes": [
            { "key": "team", "value": "edge" }, { "key": "tier", "value": "gold" }
        ] } }),
        &[],
    )
    .await;
    let _: i64 = pool_named(&traced, "traced_pool")
        .incr("traced", 1)
        .await
        .unwrap();
    traced.shutdown().await;

    let seen = observed.spans.spans();
    let command = seen
        .iter()
        .find(|span| span.starts_with("redis.command") && span.contains("traced_pool"))
        .unwrap_or_else(|| panic!("no redis.command span in {seen:?}"));
    println!("{command}");
    for field in [
        "otel.name=\"INCRBY\"",
        "db.system.name=\"redis\"",
        "db.operation.name=\"INCRBY\"",
        "db.namespace=\"3\"",
        "server.address=\"127.0.0.1\"",
        &format!("server.port={}", server.port()),
        "attributes=\"team=edge,tier=gold\"",
    ] {
        assert!(command.contains(field), "no {field} in {command}");
    }

    // Exported through OpenTelemetry: named after the operation, each static attribute its own.
    let exported = exported_of("traced_pool");
    let span = exported
        .first()
        .unwrap_or_else(|| panic!("no exported span for the pool"));
    let attribute = |key: &str| attribute(span, key);
    assert_eq!(span.name, "INCRBY");
    assert_eq!(attribute("db.system.name").as_deref(), Some("redis"));
    assert_eq!(attribute("team").as_deref(), Some("edge"));
    assert_eq!(attribute("tier").as_deref(), Some("gold"));
    assert_eq!(attribute("server.port"), Some(server.port().to_string()));

    let quiet = pool_runtime(
        &server,
        "quiet_pool",
        json!({ "opentelemetry": { "disable_traces": true } }),
        &[],
    )
    .await;
    let _: i64 = pool_named(&quiet, "quiet_pool")
        .incr("traced", 1)
        .await
        .unwrap();
    quiet.shutdown().await;
    let seen = observed.spans.spans();
    assert!(
        !seen.iter().any(|span| span.contains("quiet_pool")),
        "disable_traces still traced: {seen:?}"
    );
}

#[tokio::test]
async fn operations_are_timed_and_failures_counted_by_kind() {
    let observed = observed();
    let server = RedisServer::start();
    let runtime = pool_runtime(
        &server,
        "metered_pool",
        json!({ "max_retries": 1, "min_retry_backoff": "1ms", "max_retry_backoff": "2ms" }),
        &[],
    )
    .await;
    let pool = pool_named(&runtime, "metered_pool");
    for _ in 0..3 {
        let _: i64 = pool.clone().incr("metered", 1).await.unwrap();
    }
    // A server error: counted as `server`, not retried.
    let _: () = pool.clone().set("a-string", "x").await.unwrap();
    assert!(pool.clone().incr::<_, _, i64>("a-string", 1).await.is_err());
    // A dead server: retried once, then a `connection` failure.
    server.stop();
    assert!(pool.clone().incr::<_, _, i64>("metered", 1).await.is_err());
    let _ = pool.checkout().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    runtime.shutdown().await;

    let snapshot = observed.metrics.snapshot().into_vec();
    let of = |name: &str| -> Vec<(String, &DebugValue)> {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .filter(|(key, ..)| key.key().labels().any(|l| l.value() == "metered_pool"))
            .map(|(key, _, _, value)| {
                let mut labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (labels.join(","), value)
            })
            .collect()
    };
    let durations = of("db.client.operation.duration");
    println!("{durations:#?}");
    let incr_ok = durations
        .iter()
        .find(|(labels, _)| {
            labels.contains("db.operation.name=INCRBY") && !labels.contains("error.type")
        })
        .unwrap_or_else(|| panic!("no INCRBY timing in {durations:#?}"));
    let DebugValue::Histogram(values) = incr_ok.1 else {
        panic!("not a histogram: {incr_ok:?}");
    };
    assert_eq!(values.len(), 3, "one sample per INCRBY that succeeded");
    assert!(incr_ok.0.contains("db.system.name=redis"), "{}", incr_ok.0);

    let errors = of("redplug.db.client.errors");
    println!("{errors:#?}");
    let count = |kind: &str| {
        errors
            .iter()
            .find(|(labels, _)| labels.contains(&format!("error.type={kind}")))
            .map(|(_, value)| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .unwrap_or(0)
    };
    assert_eq!(count("server"), 1, "{errors:#?}");
    assert!(count("connection") >= 1, "{errors:#?}");
    let retries = of("redplug.db.client.retries");
    assert!(
        matches!(retries.first(), Some((_, DebugValue::Counter(n))) if *n >= 1),
        "{retries:#?}"
    );
    assert!(
        !of("db.client.connection.count").is_empty(),
        "connection gauges"
    );
    assert!(
        !of("db.client.connection.wait_time").is_empty(),
        "checkout waits"
    );
}

/// The spans OpenTelemetry exported so far for the pool or cluster called `pool`, in the order
/// they ended.
fn exported_of(pool: &str) -> Vec<SpanData> {
    let observed = observed();
    observed.provider.force_flush().expect("flushed");
    let exported = observed
        .exported
        .get_finished_spans()
        .expect("exported spans");
    exported
        .into_iter()
        .filter(|span| attribute(span, "db.client.connection.pool.name").as_deref() == Some(pool))
        .collect()
}

/// The value of `span`'s attribute `key`, as text.
fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The `redis.command` spans of the pool called `pool` so far.
fn spans_of(pool: &str) -> Vec<String> {
    observed()
        .spans
        .spans()
        .into_iter()
        .filter(|span| span.starts_with("redis.command") && span.contains(pool))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_behind_sentinel_names_the_master_it_follows() {
    let _ = observed();
    let set = redplug_testkit::RedisSentinelSet::start();
    let pool = json!({
        "name": "sentinel_traced",
        "db": 5,
        "sentinel": { "master_name": set.master_name(), "addresses": set.sentinel_addrs() },
    });
    let config = json!({ "extra_config": { "redis": { "connection_pools": [pool] } } });
    let runtime = redplug_runtime::Runtime::builder()
        .only_plugins(std::iter::empty::<&str>())
        .start_json(&config.to_string())
        .await
        .unwrap_or_else(|error| panic!("the runtime did not start: {error}"));
    let redis = pool_named(&runtime, "sentinel_traced");
    let first = set.master();
    // The first command's span opens before the pool asked the sentinels for the master.
    for _ in 0..2 {
        let _: i64 = redis.clone().incr("traced", 1).await.unwrap();
    }
    let names_master = |span: &String, master: usize| {
        let port = set.nodes()[master].port();
        span.contains("server.address=\"127.0.0.1\"")
            && span.contains(&format!("server.port={port}"))
            && span.contains("db.namespace=\"5\"")
    };
    let before = spans_of("sentinel_traced");
    assert!(
        before.iter().any(|span| names_master(span, first)),
        "no span names the first master: {before:#?}"
    );

    let promoted = support::manual_failover(&set, 0, first).await;
    redplug_testkit::wait_for_async(
        "a span naming the promoted master",
        Duration::from_secs(10),
        || async {
            // Errors while the pool moves over are expected; only the spans matter here.
            let _: redis::RedisResult<i64> = redis.clone().incr("traced", 1).await;
            let spans = spans_of("sentinel_traced");
            if spans.iter().any(|span| names_master(span, promoted)) {
                Ok(())
            } else {
                Err(format!("{:#?}", spans.last()))
            }
        },
    )
    .await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_command_names_the_node_that_serves_its_key() {
    let _ = observed();
    let cluster = redplug_testkit::RedisCluster::start(3, 0);
    let config = json!({ "extra_config": { "redis": { "clusters": [
        { "name": "traced_cluster", "addresses": cluster.addrs() }
    ] } } });
    let runtime = redplug_runtime::Runtime::builder()
        .only_plugins(std::iter::empty::<&str>())
        .start_json(&config.to_string())
        .await
        .unwrap_or_else(|error| panic!("the runtime did not start: {error}"));
    let redis = runtime
        .selectors()
        .cluster("traced_cluster")
        .unwrap_or_else(|| panic!("the cluster `traced_cluster` is configured"));
    // One command after the other, on keys spread over the masters: the spans end in the
    // order of the keys.
    let keys: Vec<String> = (0..30).map(|i| format!("traced:{i}")).collect();
    for key in &keys {
        let _: i64 = redis.clone().incr(key, 1).await.unwrap();
    }
    runtime.shutdown().await;

    let named: Vec<(Option<String>, Option<String>)> = exported_of("traced_cluster")
        .iter()
        .map(|span| {
            (
                attribute(span, "server.address"),
                attribute(span, "server.port"),
            )
        })
        .collect();
    assert_eq!(named.len(), keys.len(), "one span per command: {named:?}");
    let mut ports = std::collections::BTreeSet::new();
    for (key, (address, port)) in keys.iter().zip(&named) {
        let node = cluster.nodes()[cluster.node_for_key(key)]
            .port()
            .to_string();
        assert_eq!(address.as_deref(), Some("127.0.0.1"), "{key}");
        assert_eq!(
            port.as_deref(),
            Some(node.as_str()),
            "{key}: not its node's port"
        );
        ports.insert(node);
    }
    assert_eq!(ports.len(), 3, "the keys reached every master: {ports:?}");
}
