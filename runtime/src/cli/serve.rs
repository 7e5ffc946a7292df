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
