//! The `opentelemetry` options: a `tracing` span per command and metrics through the `metrics`
//! facade, both named by OpenTelemetry's semantic conventions for database clients.
//!
//! redplug does not pick an exporter: a host that installs an OpenTelemetry layer for
//! `tracing` (and a `metrics` recorder) sees Redis activity alongside its own; `redplug serve`
//! installs a Prometheus exporter when the config asks for one.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `db.client.operation.duration` | histogram, seconds | `db.system.name`, `db.client.connection.pool.name`, `db.operation.name`, `error.type` on failures |
//! | `db.client.connection.count` | gauge | pool name, `db.client.connection.state` (`idle`, `used`) |
//! | `db.client.connection.max` | gauge | pool name |
//! | `db.client.connection.pending_requests` | gauge | pool name |
//! | `db.client.connection.wait_time` | histogram, seconds | pool name: the wait for an exclusive connection |
//! | `db.client.connection.timeouts` | counter | pool name: waits that reached `pool_timeout` |
//! | `redplug.db.client.errors` | counter | pool name, `error.type` (`timeout`, `connection`, `server`) |
//! | `redplug.db.client.retries` | counter | pool name |
//! | `redplug.db.client.redirects` | counter | cluster name, `redplug.redirect.kind` (`moved`, `ask`) |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use redplug::PoolStatus;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Address, TelemetryConfig};
use crate::net::sentinel::Sentinels;

/// The name of every command's span.
const COMMAND_SPAN: &str = "redis.command";

/// The label with the pool's or cluster's name, as OpenTelemetry names it.
const POOL: &str = "db.client.connection.pool.name";

/// Where a pool's commands go, for spans' `server.address` and `server.port`.
pub(crate) enum Server {
    /// One address, from the config.
    Fixed(Arc<Address>),
    /// The master the sentinels named last; none before the first answer.
    Master(Arc<Sentinels>),
}

impl Server {
    fn current(&self) -> Option<Arc<Address>> {
        match self {
            Server::Fixed(address) => Some(address.clone()),
            Server::Master(sentinels) => sentinels.named(),
        }
    }
}

/// Per-pool telemetry settings, decided once at startup.
pub(crate) struct Telemetry {
    owner: Arc<str>,
    traces: bool,
    metrics: bool,
    server: Option<Server>,
    /// `db.namespace`: the database index, as text.
    namespace: Option<Arc<str>>,
    /// `traces_static_attributes`, each an attribute of its own on every span (with the
    /// `opentelemetry` feature; without it, also as one `attributes` field).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    attributes: Arc<[(String, String)]>,
    /// The same, rendered once as `key=value` pairs for plain `tracing` subscribers.
    rendered: Arc<str>,
    /// The duration histograms of successful operations, registered once.
    durations: ArcSwap<Durations>,
}

/// The most operation names whose histogram handle a pool keeps; others are registered per
/// call, which costs more but works the same.
const CACHED_OPERATIONS: usize = 64;

/// `db.client.operation.duration` handles of successful operations by operation name, for the
/// recorder that registered them. Building a metric's key (its labels, the operation name
/// copied) for every command cost more than the rest of the instrumentation together (about 8%
/// of the injected handle's throughput at 64 tasks in `benches/throughput`).
///
/// A handle belongs to the recorder current when it was registered, so the cache remembers
/// which one that was (by address) and starts over when another is current: a host that
/// installs its recorder after the first commands, or a test's thread-local recorder. A
/// recorder dropped and another made at the same address while the pool lives (a test that
/// makes recorders on the stack one after the other around one runtime) would find the old
/// handles: give each such test its own runtime.
#[derive(Default)]
struct Durations {
    recorder: usize,
    by_operation: Vec<(Box<str>, metrics::Histogram)>,
}

impl Telemetry {
    /// Telemetry for the pool or cluster called `owner`; `db` and `server` when its commands
    /// all go to one database of one server (a pool).
    pub(crate) fn new(
        owner: Arc<str>,
        config: &TelemetryConfig,
        db: Option<i64>,
        server: Option<Server>,
    ) -> Self {
        let rendered = config
            .traces_static_attributes
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            owner,
            traces: !config.disable_traces,
            metrics: !config.disable_metrics,
            namespace: db.map(|db| Arc::from(db.to_string())),
            server,
            attributes: config.traces_static_attributes.clone().into(),
            rendered: rendered.into(),
            durations: ArcSwap::default(),
        }
    }

    /// Boxes the future that `run` makes for one command: in a span unless traces are
    /// disabled or nobody listens, and timed unless metrics are disabled.
    ///
    /// Takes a constructor rather than the future: a command's future is a kilobyte or more,
    /// and one passed by value is copied on its way into the box. Built by [`boxed_in_place`],
    /// it is written straight into its allocation.
    #[inline(always)]
    pub(crate) fn command<'a, T, F>(
        &'a self,
        cmd: &'a Cmd,
        run: impl FnOnce() -> F + Send + 'a,
    ) -> RedisFuture<'a, T>
    where
        T: Reply + Send + 'a,
        F: Future<Output = RedisResult<T>> + Send + 'a,
    {
        let operation = command_name(cmd);
        self.operation(operation, run)
    }

    /// Boxes the future that `run` makes for a pipeline (see [`Telemetry::command`]); its
    /// operation is `PIPELINE`.
    #[inline(always)]
    pub(crate) fn pipeline<'a, T, F>(
        &'a self,
        _pipeline: &Pipeline,
        run: impl FnOnce() -> F + Send + 'a,
    ) -> RedisFuture<'a, T>
    where
        T: Reply + Send + 'a,
        F: Future<Output = RedisResult<T>> + Send + 'a,
    {
        self.operation("PIPELINE", run)
    }

    /// Runs `future`, one command's work, in its span and timed, as [`Telemetry::command`]
    /// does, without boxing it: for a caller that boxes a larger future around it (a handle's
    /// slot, which holds the engine for the command's whole life).
    pub(crate) async fn observe<T, F>(&self, cmd: &Cmd, future: F) -> RedisResult<T>
    where
        T: Reply,
        F: Future<Output = RedisResult<T>>,
    {
        let operation = command_name(cmd);
        let span = if self.traces {
            self.span(operation)
        } else {
            tracing::Span::none()
        };
        let timing = self.metrics.then(|| Timing {
            telemetry: self,
            operation,
            started: Instant::now(),
        });
        // Timed inside the span, so that a failure's `error.type` lands on it.
        let timed = async move {
            let result = future.await;
            if let Some(timing) = timing {
                match &result {
                    Ok(reply) if reply.is_error_reply() => timing.done(Some("server")),
                    Ok(_) => timing.done(None),
                    Err(error) => timing.done(Some(error_type(error))),
                }
            }
            result
        };
        if span.is_disabled() {
            timed.await
        } else {
            timed.instrument(span).await
        }
    }

    #[inline(always)]
    fn operation<'a, T, F>(
        &'a self,
        operation: &'a str,
        run: impl FnOnce() -> F + Send + 'a,
    ) -> RedisFuture<'a, T>
    where
        T: Reply + Send + 'a,
        F: Future<Output = RedisResult<T>> + Send + 'a,
    {
        let span = if self.traces {
            self.span(operation)
        } else {
            tracing::Span::none()
        };
        if !self.metrics {
            return boxed_in_span(span, run);
        }
        let timing = Timing {
            telemetry: self,
            operation,
            started: Instant::now(),
        };
        boxed_in_span(span, move || async move {
            let result = run().await;
            match &result {
                Ok(reply) if reply.is_error_reply() => timing.done(Some("server")),
                Ok(_) => timing.done(None),
                Err(error) => timing.done(Some(error_type(error))),
            }
            result
        })
    }

    /// The server commands go to now, if one server takes them all.
    fn server(&self) -> Option<Arc<Address>> {
        self.server.as_ref().and_then(Server::current)
    }

    /// Names the node a cluster's command went to on the command's span, `node` being that
    /// node's telemetry: a cluster's span opens before the command's slot picks its node.
    /// Called again after a redirect, the span then names the node it was redirected to.
    pub(crate) fn record_node(&self, node: &Telemetry) {
        if !self.traces {
            return;
        }
        // With the command's span filtered out, the current span is the caller's, whose own
        // `server.address` (an HTTP span's, say) is not ours to change.
        let span = tracing::Span::current();
        if span
            .metadata()
            .is_none_or(|span| span.name() != COMMAND_SPAN)
        {
            return;
        }
        if let Some(server) = node.server() {
            span.record("server.address", server.host.as_str());
            span.record("server.port", server.port);
        }
    }

    /// The span of one operation, at INFO: `otel.name` is the operation, as OpenTelemetry
    /// names database spans.
    fn span(&self, operation: &str) -> tracing::Span {
        let span = tracing::info_span!(
            COMMAND_SPAN,
            otel.name = operation,
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = operation,
            db.client.connection.pool.name = %self.owner,
            db.namespace = self.namespace.as_deref(),
            server.address = self.server().as_ref().map(|s| s.host.as_str()),
            server.port = self.server().map(|s| s.port),
            attributes = (!self.rendered.is_empty()).then_some(&*self.rendered),
            error.type = tracing::field::Empty,
        );
        if span.is_disabled() {
            return span;
        }
        #[cfg(feature = "opentelemetry")]
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            for (key, value) in self.attributes.iter() {
                span.set_attribute(key.clone(), value.clone());
            }
        }
        span
    }

    /// Publishes a pool's connection counts as gauges unless metrics are disabled.
    pub(crate) fn record_status(&self, status: &PoolStatus) {
        if !self.metrics {
            return;
        }
        let owner = self.owner.clone();
        let connections = |state: &'static str, value: usize| {
            metrics::gauge!(
                "db.client.connection.count",
                POOL => owner.clone(),
                "db.client.connection.state" => state
            )
            .set(value as f64);
        };
        connections("idle", status.idle);
        connections("used", status.in_use);
        metrics::gauge!("db.client.connection.max", POOL => owner.clone())
            .set(status.max_size as f64);
        metrics::gauge!("db.client.connection.pending_requests", POOL => owner)
            .set(status.waiting as f64);
    }

    /// Records how long a caller waited for an exclusive connection, and whether the wait
    /// ended at `pool_timeout`.
    pub(crate) fn record_wait(&self, waited: Duration, timed_out: bool) {
        if !self.metrics {
            return;
        }
        metrics::histogram!("db.client.connection.wait_time", POOL => self.owner.clone())
            .record(waited.as_secs_f64());
        if timed_out {
            metrics::counter!("db.client.connection.timeouts", POOL => self.owner.clone())
                .increment(1);
        }
    }

    /// Counts one retry of a failed command.
    pub(crate) fn record_retry(&self) {
        if self.metrics {
            metrics::counter!("redplug.db.client.retries", POOL => self.owner.clone()).increment(1);
        }
    }

    /// Counts `error` if it is a redirect (`MOVED` or `ASK`), followed or not.
    pub(crate) fn record_redirect(&self, error: &RedisError) {
        if self.metrics {
            Redirects(Some(self.owner.clone())).see(error);
        }
    }
}

/// Counts the redirects (`MOVED`, `ASK`) that a cluster's node connections receive, followed
/// or not, as `redplug.db.client.redirects` by `redplug.redirect.kind`: each is a command that
/// went to a node that does not serve its slot (any more), so a steady count says slots are
/// migrating or the slot map is stale.
#[derive(Clone, Default)]
pub(crate) struct Redirects(Option<Arc<str>>);

impl Redirects {
    /// Counts the redirects of the cluster `cluster`, unless its metrics are disabled.
    pub(crate) fn new(cluster: Arc<str>, config: &TelemetryConfig) -> Self {
        Self((!config.disable_metrics).then_some(cluster))
    }

    /// Counts `error` if it is a redirect.
    pub(crate) fn see(&self, error: &RedisError) {
        let Some(cluster) = &self.0 else {
            return;
        };
        let kind = match error.kind() {
            ErrorKind::Server(ServerErrorKind::Moved) => "moved",
            ErrorKind::Server(ServerErrorKind::Ask) => "ask",
            _ => return,
        };
        metrics::counter!(
            "redplug.db.client.redirects",
            POOL => cluster.clone(),
            "redplug.redirect.kind" => kind
        )
        .increment(1);
    }

    /// Counts the redirects in a command's outcome: an error, or an error reply.
    pub(crate) fn see_outcome(&self, outcome: &RedisResult<Value>) {
        if self.0.is_none() {
            return;
        }
        match outcome {
            Err(error) => self.see(error),
            Ok(reply @ Value::ServerError(_)) => {
                if let Err(error) = reply.clone().extract_error() {
                    self.see(&error);
                }
            }
            Ok(_) => {}
        }
    }

    /// Counts the redirects among a pipeline's replies.
    pub(crate) fn see_replies(&self, outcome: &RedisResult<Vec<Value>>) {
        if self.0.is_none() {
            return;
        }
        match outcome {
            Err(error) => self.see(error),
            Ok(replies) => {
                for reply in replies {
                    if let Value::ServerError(_) = reply
                        && let Err(error) = reply.clone().extract_error()
                    {
                        self.see(&error);
                    }
                }
            }
        }
    }
}

/// One operation's start, recorded when it ends.
struct Timing<'a> {
    telemetry: &'a Telemetry,
    operation: &'a str,
    started: Instant,
}

/// A reply that may be Redis' error answer rather than a failure of the call: redis-rs hands
/// those back as values, and only the caller's conversion turns them into errors.
pub(crate) trait Reply {
    /// Whether the reply is (or, for a pipeline, holds) an error answer.
    fn is_error_reply(&self) -> bool;
}

impl Reply for redis::Value {
    fn is_error_reply(&self) -> bool {
        matches!(self, redis::Value::ServerError(_))
    }
}

impl Reply for Vec<redis::Value> {
    fn is_error_reply(&self) -> bool {
        self.iter().any(Reply::is_error_reply)
    }
}

impl Timing<'_> {
    /// Records the operation's duration, with `error` (its `error.type`) when it failed.
    fn done(self, error: Option<&'static str>) {
        let seconds = self.started.elapsed().as_secs_f64();
        let owner = &self.telemetry.owner;
        match error {
            None => self.telemetry.record_duration(self.operation, seconds),
            Some(kind) => {
                tracing::Span::current().record("error.type", kind);
                metrics::histogram!(
                    "db.client.operation.duration",
                    "db.system.name" => "redis",
                    POOL => owner.clone(),
                    "db.operation.name" => self.operation.to_owned(),
                    "error.type" => kind
                )
                .record(seconds);
                metrics::counter!(
                    "redplug.db.client.errors",
                    POOL => owner.clone(),
                    "error.type" => kind
                )
                .increment(1);
            }
        }
    }
}

impl Telemetry {
    /// Records a successful operation's duration through a cached handle (see [`Durations`]).
    fn record_duration(&self, operation: &str, seconds: f64) {
        let recorder = metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).addr());
        let cached = self.durations.load();
        let current = cached.recorder == recorder;
        if current
            && let Some((_, histogram)) = cached
                .by_operation
                .iter()
                .find(|(name, _)| **name == *operation)
        {
            histogram.record(seconds);
            return;
        }
        let histogram = metrics::histogram!(
            "db.client.operation.duration",
            "db.system.name" => "redis",
            POOL => self.owner.clone(),
            "db.operation.name" => operation.to_owned()
        );
        histogram.record(seconds);
        let mut by_operation = if current {
            cached.by_operation.clone()
        } else {
            Vec::new()
        };
        if by_operation.len() < CACHED_OPERATIONS {
            by_operation.push((operation.into(), histogram));
            // Two tasks that miss at once may each store their own: one insert is lost and
            // made again on the next miss.
            self.durations.store(Arc::new(Durations {
                recorder,
                by_operation,
            }));
        }
    }
}

/// What kind of failure `error` is: `timeout`, `connection` (the network or the connection
/// broke) or `server` (Redis answered with an error).
pub(crate) fn error_type(error: &RedisError) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        "connection"
    } else {
        "server"
    }
}

/// Boxes the future `run` makes inside `span`, or bare when nobody listens at the span's level:
/// then the `Instrumented` wrapper would only cost the hot path.
#[inline(always)]
fn boxed_in_span<'a, T, F>(span: tracing::Span, run: impl FnOnce() -> F) -> RedisFuture<'a, T>
where
    F: Future<Output = RedisResult<T>> + Send + 'a,
{
    if span.is_disabled() {
        return boxed_in_place(run);
    }
    boxed_in_place(|| run().instrument(span))
}

/// Allocates first and builds the future after, so that the compiler can construct it in the
/// allocation; `Box::pin(make())` builds it on the stack and then copies it.
#[inline(always)]
pub(crate) fn boxed_in_place<'a, T, F>(make: impl FnOnce() -> F) -> RedisFuture<'a, T>
where
    F: Future<Output = RedisResult<T>> + Send + 'a,
{
    let slot = Box::<F>::new_uninit();
    let future: Box<F> = Box::write(slot, make());
    Box::into_pin(future)
}

fn command_name(cmd: &Cmd) -> &str {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => std::str::from_utf8(name).unwrap_or("?"),
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn status() -> PoolStatus {
        PoolStatus {
            name: "cache".into(),
            max_size: 10,
            size: 4,
            idle: 3,
            in_use: 1,
            waiting: 2,
        }
    }

    fn recorded(config: TelemetryConfig) -> Vec<(String, f64)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            Telemetry::new("cache".into(), &config, None, None).record_status(&status());
        });
        let mut gauges: Vec<(String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(value) => {
                    let labels: Vec<String> = key
                        .key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    Some((
                        format!("{}{{{}}}", key.key().name(), labels.join(",")),
                        value.0,
                    ))
                }
                _ => None,
            })
            .collect();
        gauges.sort_by(|a, b| a.0.cmp(&b.0));
        gauges
    }

    /// Durations recorded under `recorder`, as (operation, count).
    fn durations(
        recorder: &DebuggingRecorder,
        telemetry: &Telemetry,
        operations: &[&str],
    ) -> Vec<(String, usize)> {
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(recorder, || {
            for operation in operations {
                telemetry.record_duration(operation, 0.001);
            }
        });
        let mut seen: Vec<(String, usize)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let operation = key
                    .key()
                    .labels()
                    .find(|l| l.key() == "db.operation.name")?
                    .value()
                    .to_owned();
                match value {
                    // A snapshot drains histograms; ones with nothing new are left out.
                    DebugValue::Histogram(values) if !values.is_empty() => {
                        Some((operation, values.len()))
                    }
                    _ => None,
                }
            })
            .collect();
        seen.sort();
        seen
    }

    #[test]
    fn cached_duration_handles_follow_the_current_recorder() {
        let telemetry = Telemetry::new("cache".into(), &TelemetryConfig::default(), None, None);
        // Recorded with no recorder installed: dropped, and the cached handles are no-ops.
        telemetry.record_duration("GET", 0.001);
        let (first, second) = (DebuggingRecorder::new(), DebuggingRecorder::new());
        let expected = vec![("GET".to_owned(), 2), ("SET".to_owned(), 1)];
        assert_eq!(
            durations(&first, &telemetry, &["GET", "SET", "GET"]),
            expected
        );
        // Another recorder (a later global one, or another test's) gets every sample too.
        assert_eq!(
            durations(&second, &telemetry, &["GET", "SET", "GET"]),
            expected
        );
        assert_eq!(
            durations(&first, &telemetry, &["SET"]),
            [("SET".to_owned(), 1)]
        );
    }

    #[test]
    fn pool_gauges_are_published_unless_disabled() {
        let gauges = recorded(TelemetryConfig::default());
        let expected = [
            (
                "db.client.connection.count{db.client.connection.pool.name=cache,db.client.connection.state=idle}",
                3.0,
            ),
            (
                "db.client.connection.count{db.client.connection.pool.name=cache,db.client.connection.state=used}",
                1.0,
            ),
            (
                "db.client.connection.max{db.client.connection.pool.name=cache}",
                10.0,
            ),
            (
                "db.client.connection.pending_requests{db.client.connection.pool.name=cache}",
                2.0,
            ),
        ];
        let expected: Vec<(String, f64)> =
            expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(gauges, expected);

        let disabled = TelemetryConfig {
            disable_metrics: true,
            ..TelemetryConfig::default()
        };
        assert_eq!(recorded(disabled), Vec::new());
    }

    #[test]
    fn failures_are_told_apart_by_kind() {
        let timeout = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "no",
        ));
        let server = redis::parse_redis_value(b"-WRONGTYPE wrong kind\r\n")
            .ok()
            .and_then(|value| match value {
                redis::Value::ServerError(error) => Some(RedisError::from(error)),
                _ => None,
            })
            .expect("an error reply");
        assert_eq!(
            [
                error_type(&timeout),
                error_type(&refused),
                error_type(&server)
            ],
            ["timeout", "connection", "server"]
        );
    }
}
