//! What the examples share: finding a Redis to talk to.

use std::time::Duration;

use redplug_testkit::RedisServer;

/// The address to use for a configured `address`: itself when a Redis answers there, else a
/// private `redis-server` started for this run (kept alive by the returned guard). Fails with
/// install instructions when `redis-server` is missing too. `REDPLUG_EXAMPLE_REDIS=host:port`
/// overrides the configured address.
pub async fn redis_at(address: &str) -> Result<(String, Option<RedisServer>), String> {
    let address = std::env::var("REDPLUG_EXAMPLE_REDIS").unwrap_or_else(|_| address.to_owned());
    let address = address.as_str();
    if answers_ping(address).await {
        println!("using the Redis at {address}");
        return Ok((address.to_owned(), None));
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    });
    if !on_path {
        return Err(redplug_testkit::missing_program_message("redis-server"));
    }
    let server = RedisServer::start();
    println!(
        "nothing answers at {address}; started a private redis-server at {} for this run",
        server.addr()
    );
    Ok((server.addr(), Some(server)))
}

async fn answers_ping(address: &str) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://{address}")) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(_))
    )
}

/// The process exit for an example's result: errors go to stderr with a failing status.
pub fn exit(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, keeping stdout for the example's output. `RUST_LOG` (targets and levels,
/// such as `warn,redplug_runtime=debug`) overrides the default.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = "warn,redplug_runtime=info";
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| default.parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}
