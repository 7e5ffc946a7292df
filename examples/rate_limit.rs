//! An `on_request` plugin that answers early: the `rate_limit` plugin from
//! `examples/plugins` allows 3 requests per client per window and answers the rest with 429.
//!
//! ```text
//! cargo run --example rate_limit
//! ```

use std::process::ExitCode;

use redplug_runtime::Pipeline;
use redplug_runtime::Runtime;
use serde_json::json;

mod support;

// The plugin lives in another crate that nothing here names; link it so it registers.
redplug::link!(redplug_example_plugins);

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    support::exit(run().await)
}

async fn run() -> Result<(), String> {
    let (address, _private) = support::redis_at("localhost:6379").await?;
    // A window per run keeps repeated runs independent of each other.
    let run_id = std::process::id();
    let config = json!({
        "version": 3,
        "extra_config": {
            "redis": { "connection_pools": [{ "name": "ratelimit_counters", "address": address, "db": 3 }] },
            "plugin/redplug": { "rate_limit": { "limit": 3, "window": "1m", "key_header": "x-client-id" } }
        }
    });
    let runtime = Runtime::builder()
        .only_plugins(["rate_limit"])
        .start_json(&config.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let pipeline = Pipeline::new(&runtime, ["rate_limit"]).map_err(|e| e.to_string())?;

    for client in ["tenant-a", "tenant-b"] {
        let attempts = if client == "tenant-a" { 5 } else { 2 };
        for attempt in 1..=attempts {
            let request = http::Request::builder()
                .uri("/api")
                .header("x-client-id", format!("{client}-{run_id}"))
                .body(bytes::Bytes::new())
                .map_err(|e| e.to_string())?;
            let response = pipeline
                .run(request, |_| async {
                    redplug::Response::new(bytes::Bytes::from_static(b"ok\n"))
                })
                .await;
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|s| format!(" (retry after {s}s)"))
                .unwrap_or_default();
            println!(
                "{client} request {attempt}: {}{retry_after}",
                response.status()
            );
        }
    }
    runtime.shutdown().await;
    Ok(())
}
