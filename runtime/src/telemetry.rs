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
pub struct Telemetry {
    owner: Arc<str>,
    traces: bool,
    metrics: bool,
    /// `traces_static_attributes` rendered once as `key=value` pairs.
    attributes: Arc<str>,
}

impl Telemetry {
    /// Telemetry for the pool or cluster called `owner`.
    pub fn new(owner: Arc<str>, config: &TelemetryConfig) -> Self {
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

    /// Whether commands get spans.
    pub fn traces(&self) -> bool {
        self.traces
    }

    /// Wraps one command's future in a `redis.command` span unless traces are disabled.
    pub fn command<'a, T: Send + 'a>(
        &self,
        cmd: &Cmd,
        run: impl Future<Output = RedisResult<T>> + Send + 'a,
    ) -> RedisFuture<'a, T> {
        if !self.traces {
            return Box::pin(run);
        }
        let span = tracing::debug_span!(
            "redis.command",
            db.system = "redis",
            redis.pool = %self.owner,
            db.operation = command_name(cmd),
            attributes = %self.attributes,
        );
        if span.is_disabled() {
            // Nobody listens at this level: skip the Instrumented wrapper on the hot path.
            return Box::pin(run);
        }
        Box::pin(run.instrument(span))
    }

    /// Wraps a pipeline's future in a `redis.pipeline` span unless traces are disabled.
    pub fn pipeline<'a, T: Send + 'a>(
        &self,
        pipeline: &Pipeline,
        run: impl Future<Output = RedisResult<T>> + Send + 'a,
    ) -> RedisFuture<'a, T> {
        if !self.traces {
            return Box::pin(run);
        }
        let span = tracing::debug_span!(
            "redis.pipeline",
            db.system = "redis",
            redis.pool = %self.owner,
            commands = pipeline.cmd_iter().count(),
            attributes = %self.attributes,
        );
        if span.is_disabled() {
            // Nobody listens at this level: skip the Instrumented wrapper on the hot path.
            return Box::pin(run);
        }
        Box::pin(run.instrument(span))
    }

    /// Publishes a pool's connection counts as gauges unless metrics are disabled.
    pub fn record_status(&self, status: &PoolStatus) {
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
