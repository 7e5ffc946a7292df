//! `redplug serve <config.json>`: the config's endpoints as a gateway, until SIGTERM or SIGINT.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::runtime::Runtime;
use crate::serve::Gateway;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// The gateway's KrakenD-style JSON config file.
    config: PathBuf,
    /// How long requests in flight may take to finish once SIGTERM or SIGINT arrives (a Go
    /// duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_timeout)]
    grace: Duration,
}

/// Runs the gateway; `Ok(false)` when it could not start (the reason is on `err`).
pub(super) fn serve(
    args: &ServeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    init_logging();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            writeln!(err, "error: cannot start the async runtime: {error}")?;
            return Ok(false);
        }
    };
    tokio.block_on(async {
        let runtime = match Runtime::from_file(&args.config).await {
            Ok(runtime) => runtime,
            Err(error) => {
                writeln!(err, "error: {error}")?;
                return Ok(false);
            }
        };
        let started = async {
            let gateway = Gateway::new(&runtime)?;
            let listener = gateway.bind().await?;
            Ok::<_, crate::serve::GatewayError>((gateway, listener))
        };
        let (gateway, listener) = match started.await {
            Ok(started) => started,
            Err(error) => {
                writeln!(err, "error: {error}")?;
                runtime.shutdown().await;
                return Ok(false);
            }
        };
        let address = listener.local_addr()?;
        if let Err(message) = serve_metrics(&runtime.config().gateway.prometheus) {
            writeln!(err, "error: {message}")?;
            runtime.shutdown().await;
            return Ok(false);
        }
        let endpoints = runtime.endpoints();
        writeln!(
            out,
            "redplug serving {} endpoint{} on http://{address}",
            endpoints.len(),
            if endpoints.len() == 1 { "" } else { "s" }
        )?;
        for endpoint in endpoints.iter() {
            let backend = &endpoint.backends()[0];
            writeln!(
                out,
                "  {} {} -> {} {}{}  plugins {:?} / {:?}",
                endpoint.method(),
                endpoint.path(),
                backend.method(),
                backend.hosts().join("|"),
                backend.url_pattern(),
                endpoint.chain().names(),
                backend.chain().names(),
            )?;
        }
        out.flush()?;
        let reloads = tokio::spawn(reload_on_hangup(gateway.reloader(), args.config.clone()));
        gateway.serve(listener, stop_signal(), args.grace).await?;
        reloads.abort();
        runtime.shutdown().await;
        writeln!(out, "redplug stopped")?;
        Ok(true)
    })
}

/// Histogram buckets for durations, in seconds: 100 µs to 10 s, as Redis commands spread.
const SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Serves the metrics at `/metrics` for Prometheus, on the first exporter the config lists
/// (one recorder serves one address; the others are reported and left out).
fn serve_metrics(exporters: &[crate::config::PrometheusExporter]) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    let Some(first) = exporters.first() else {
        return Ok(());
    };
    for other in &exporters[1..] {
        tracing::warn!(
            exporter = %other.name,
            "only the first Prometheus exporter is served; this one is left out"
        );
    }
    let address = std::net::SocketAddr::new(first.listen_ip, first.port);
    let builder = PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &SECONDS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Suffix("wait_time".into()), &SECONDS)
        })
        .map_err(|error| format!("cannot set up the Prometheus exporter: {error}"))?;
    match builder.install() {
        Ok(()) => {
            tracing::info!(exporter = %first.name, %address, "serving metrics at /metrics");
            Ok(())
        }
        Err(error) => Err(format!(
            "cannot serve metrics for the Prometheus exporter `{}` on {address}: {error}",
            first.name
        )),
    }
}

/// Reloads the config file on every SIGHUP, logging what changed or why nothing did.
async fn reload_on_hangup(reloader: crate::serve::Reloader, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the config cannot be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
        match reloader.reload_file(&path).await {
            Ok(report) => tracing::info!(%report, "config reloaded"),
            Err(error) => tracing::error!(%error, "config not reloaded; the old one keeps running"),
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stop the gateway with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
}

/// Logs to stderr unless the host installed a subscriber of its own. `RUST_LOG` (targets and
/// levels, such as `info,redplug_runtime=debug`) overrides the default of `info`.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr())),
        )
        .with(filter)
        .try_init();
}
