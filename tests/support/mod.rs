//! What the integration tests share: starting a runtime with one pool, reading `CLIENT LIST`,
//! capturing log lines and spans, and blocking harness calls inside async tests.
//!
//! Each test binary includes this module with `mod support;` and uses what it needs.

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use redplug::RedisPool;
use redplug_runtime::{Runtime, StartupError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

/// A runtime with one pool called `name` at `server` and the keys of `options`, building no
/// plugins (or only `plugins`, when given).
pub async fn try_pool_runtime(
    server: &RedisServer,
    name: &str,
    options: Value,
    plugins: &[&str],
) -> Result<Runtime, StartupError> {
    let mut pool = json!({ "name": name, "address": server.addr() });
    merge(&mut pool, options);
    let config = json!({ "extra_config": { "redis": { "connection_pools": [pool] } } });
    let builder = if plugins.is_empty() {
        Runtime::builder().registrations([])
    } else {
        Runtime::builder().only_plugins(plugins.iter().copied())
    };
    builder.start_json(&config.to_string()).await
}

/// [`try_pool_runtime`] that must start.
pub async fn pool_runtime(
    server: &RedisServer,
    name: &str,
    options: Value,
    plugins: &[&str],
) -> Runtime {
    try_pool_runtime(server, name, options, plugins)
        .await
        .unwrap_or_else(|error| panic!("the runtime did not start: {error}"))
}

/// The pool called `name` of `runtime`.
pub fn pool_named(runtime: &Runtime, name: &str) -> RedisPool {
    runtime
        .selectors()
        .pool(name)
        .unwrap_or_else(|| panic!("the pool `{name}` is configured"))
}

/// Adds the keys of `extra` to the object `target`.
pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

/// The server's `CLIENT LIST`, one line per connection, without the connection asking.
pub async fn client_list(server: &RedisServer) -> Vec<String> {
    let mut admin = server.async_conn().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| !line.contains("cmd=client|list"))
        .map(str::to_owned)
        .collect()
}

/// The value of `field` (`id`, `name`, `cmd`) in one `CLIENT LIST` line.
pub fn client_field<'l>(line: &'l str, field: &str) -> Option<&'l str> {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
}

/// Runs `f` on this worker thread, for the harness's blocking calls (stop, restart).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Asks sentinel `via` of `set` for a failover away from the master, node `from`, and waits
/// (up to 20 s) until another node is the master: its index. The old master keeps running, as
/// a replica.
pub async fn manual_failover(
    set: &redplug_testkit::RedisSentinelSet,
    via: usize,
    from: usize,
) -> usize {
    let mut sentinel = set.sentinel(via).async_conn().await;
    let (): () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(set.master_name())
        .query_async(&mut sentinel)
        .await
        .expect("SENTINEL FAILOVER");
    blocking(|| set.wait_for_failover(from, std::time::Duration::from_secs(20)))
}

/// Log output written where a test can read it.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain-text subscriber writing every line at `level` or above into `logs`.
pub fn log_subscriber(
    logs: &Logs,
    level: tracing::Level,
) -> impl tracing::Subscriber + Send + Sync {
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish()
}

/// Records the spans opened while it is the global subscriber: each as its name followed by
/// its fields.
#[derive(Clone, Default)]
pub struct SpanLog(pub Arc<Mutex<Vec<String>>>);

impl SpanLog {
    /// The span log, installed as the global subscriber before any test of the binary opens a
    /// span. A global subscriber rather than a per-thread one: tracing caches per call site
    /// whether anyone is interested, and tests running in parallel can race a thread-local
    /// subscriber out of that cache. Tests tell their spans apart by the names they use.
    pub fn global() -> SpanLog {
        use tracing_subscriber::layer::SubscriberExt;
        static LOG: std::sync::OnceLock<SpanLog> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let log = SpanLog::default();
            let subscriber = tracing_subscriber::registry().with(log.clone());
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            log
        })
        .clone()
    }

    /// The spans recorded so far.
    pub fn spans(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

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
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fields.0);
    }
}
