//! Plugins per endpoint, as a `krakend.json` lists them: `examples/krakend.json` runs the
//! `rate_limit` plugin at three endpoints with a limit of its own at each (2, 5, and the
//! service-level 100), and `counter` around one backend call. This example starts the runtime
//! from that file, prints each endpoint's chains, and sends requests through them the way a
//! host does: the endpoint's chain around the call of every backend, each backend's call
//! through that backend's chain, to a stand-in backend that answers at once. (To serve the
//! same file over HTTP: `cargo run --bin redplug -- serve examples/krakend.json`.)
//!
//! ```text
//! cargo run --example endpoints [path/to/krakend.json]
//! ```

use std::process::ExitCode;

use bytes::Bytes;
use redplug_runtime::{Endpoint, Runtime};
use serde_json::Value;

mod support;

redplug::link!(redplug_example_plugins);

const KRAKEND_JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/krakend.json");

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    support::exit(run().await)
}

async fn run() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| KRAKEND_JSON.to_owned());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The file's pools point at localhost:6379; use whichever Redis answers (or a private one).
    let (address, _private) = support::redis_at("localhost:6379").await?;
    let config = with_address(&text, &address).map_err(|e| format!("{path}: {e}"))?;
    let runtime = Runtime::from_json(&config)
        .await
        .map_err(|e| format!("{path}: {e}"))?;

    // A client name per run, so that runs within one window do not share a budget.
    let client = format!("alice-{}", std::process::id());
    for endpoint in runtime.endpoints().iter() {
        println!(
            "\n{} {}  (endpoint chain: {:?})",
            endpoint.method(),
            endpoint.path(),
            endpoint.chain().names()
        );
        for (index, backend) in endpoint.backends().iter().enumerate() {
            println!(
                "  backend {index}: {} {}{}  (chain: {:?})",
                backend.method(),
                backend.hosts().join("|"),
                backend.url_pattern(),
                backend.chain().names()
            );
        }
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(call(endpoint, &client).await?);
        }
        println!("  6 requests from {client}: {statuses:?}");
    }
    runtime.shutdown().await;
    Ok(())
}

/// One client request through `endpoint`: its chain, around every backend's chain.
async fn call(endpoint: &Endpoint, client: &str) -> Result<u16, String> {
    let request = http::Request::builder()
        .method(endpoint.method())
        .uri(endpoint.path())
        .header("x-client-id", client)
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = endpoint
        .chain()
        .run(request, |request| async move {
            let mut parts = Vec::new();
            for backend in endpoint.backends() {
                let mut call = http::Request::new(Bytes::new());
                *call.method_mut() = backend.method();
                *call.headers_mut() = request.headers().clone();
                let answer = backend.chain().run(call, stand_in).await;
                parts.push(String::from_utf8_lossy(answer.body()).into_owned());
            }
            http::Response::new(Bytes::from(parts.join("")))
        })
        .await;
    Ok(response.status().as_u16())
}

/// A backend that answers at once, with the `X-Id` header `counter` counts.
async fn stand_in(_: redplug::Request) -> redplug::Response {
    let mut response = http::Response::new(Bytes::from_static(b"{}"));
    response
        .headers_mut()
        .insert("x-id", http::HeaderValue::from_static("endpoints-example"));
    response
}

/// `text` with every pool's address set to `address`.
fn with_address(text: &str, address: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let pools = config
        .pointer_mut("/extra_config/redis/connection_pools")
        .and_then(Value::as_array_mut)
        .ok_or("no extra_config.redis.connection_pools list")?;
    for pool in pools {
        pool["address"] = Value::from(address);
    }
    Ok(config.to_string())
}
