//! The `opentelemetry` options: a `tracing` span per command and pool gauges through the
//! `metrics` facade.
//!
//! redplug does not pick an exporter: a host that installs an OpenTelemetry layer for
//! `tracing` (and a `metrics` recorder) sees Redis activity alongside its own.

use std::future::Future;
use std::sync::Arc;

use redis::{Cmd, Pipeline, RedisFuture, RedisResult};
use redplug::PoolStatus;
use tracing::Instrument;

use crate::config::TelemetryConfig;

/// Per-pool telemetry settings, decided once at startup.
pub(crate) struct Telemetry {
    owner: Arc<str>,
    traces: bool,
    metrics: bool,
    /// `traces_static_attributes` rendered once as `key=value` pairs.
    attributes: Arc<str>,
}

impl Telemetry {
    /// Telemetry for the pool or cluster called `owner`.
    pub(crate) fn new(owner: Arc<str>, config: &TelemetryConfig) -> Self {
        let attributes = config
            .traces_static_attributes
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            owner,
            traces: !config.disable_traces,
            metrics: !config.disable_metrics,
            attributes: attributes.into(),
        }
    }

    /// Boxes the future that `run` makes for one command, in a `redis.command` span unless
    /// traces are disabled or nobody listens.
    ///
    /// Takes a constructor rather than the future: a command's future is a kilobyte or more,
    /// and one passed by value is copied on its way into the box. Built by [`boxed_in_place`],
    /// it is written straight into its allocation.
    #[inline(always)]
    pub(crate) fn command<'a, T, F>(&self, cmd: &Cmd, run: impl FnOnce() -> F) -> RedisFuture<'a, T>
    where
        F: Future<Output = RedisResult<T>> + Send + 'a,
    {
        if !self.traces {
            return boxed_in_place(run);
        }
        let span = tracing::debug_span!(
            "redis.command",
            db.system = "redis",
            redis.pool = %self.owner,
            db.operation = command_name(cmd),
            attributes = %self.attributes,
        );
        boxed_in_span(span, run)
    }

    /// Boxes the future that `run` makes for a pipeline, in a `redis.pipeline` span unless
    /// traces are disabled or nobody listens. See [`Telemetry::command`].
    #[inline(always)]
    pub(crate) fn pipeline<'a, T, F>(
        &self,
        pipeline: &Pipeline,
        run: impl FnOnce() -> F,
    ) -> RedisFuture<'a, T>
    where
        F: Future<Output = RedisResult<T>> + Send + 'a,
    {
        if !self.traces {
            return boxed_in_place(run);
        }
        let span = tracing::debug_span!(
            "redis.pipeline",
            db.system = "redis",
            redis.pool = %self.owner,
            commands = pipeline.cmd_iter().count(),
            attributes = %self.attributes,
        );
        boxed_in_span(span, run)
    }

    /// Publishes a pool's connection counts as gauges unless metrics are disabled.
    pub(crate) fn record_status(&self, status: &PoolStatus) {
        if !self.metrics {
            return;
        }
        let pool = self.owner.to_string();
        let gauge = |state: &'static str, value: usize| {
            metrics::gauge!("redplug_pool_connections", "pool" => pool.clone(), "state" => state)
                .set(value as f64);
        };
        gauge("open", status.size);
        gauge("idle", status.idle);
        gauge("in_use", status.in_use);
        gauge("max", status.max_size);
        metrics::gauge!("redplug_pool_waiting", "pool" => pool.clone()).set(status.waiting as f64);
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
fn boxed_in_place<'a, T, F>(make: impl FnOnce() -> F) -> RedisFuture<'a, T>
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
            Telemetry::new("cache".into(), &config).record_status(&status());
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

    #[test]
    fn pool_gauges_are_published_unless_disabled() {
        let gauges = recorded(TelemetryConfig::default());
        assert!(
            gauges.contains(&(
                "redplug_pool_connections{pool=cache,state=in_use}".into(),
                1.0
            )),
            "{gauges:?}"
        );
        assert!(gauges.contains(&(
            "redplug_pool_connections{pool=cache,state=idle}".into(),
            3.0
        )));
        assert!(gauges.contains(&("redplug_pool_waiting{pool=cache}".into(), 2.0)));

        let disabled = TelemetryConfig {
            disable_metrics: true,
            ..TelemetryConfig::default()
        };
        assert_eq!(recorded(disabled), Vec::new());
    }
}
