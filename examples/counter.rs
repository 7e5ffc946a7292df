//! The seed example: the `counter` plugin (`examples/plugins/src/counter.rs`), a response hook
//! that counts responses per `X-Id` in the `redis_at_eight` pool (db 8).
//!
//! ```text
//! cargo run --example counter
//! ```
//!
//! It loads `examples/counter.json` (or the config file given as its argument), runs a handful
//! of responses through the plugin, then reads the counters back from db 8. If no Redis answers
//! at the configured address, it starts a private `redis-server` on a free port and says so.

use std::process::ExitCode;

use redplug::prelude::*;
use redplug::redis::AsyncCommands;
use redplug_example_plugins::counter::key as counter_key;
use redplug_runtime::Pipeline;
use redplug_runtime::Runtime;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/counter.json");
const IDS: [&str; 7] = ["alice", "bob", "alice", "carol", "alice", "bob", "alice"];

mod support;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    support::exit(run().await)
}

async fn run() -> Result<(), String> {
    let path = std::env::args().nth(1).unwrap_or_else(|| CONFIG.to_owned());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let pool = &mut config["extra_config"]["redis"]["connection_pools"][0]["address"];
    // Keep a private server alive until the end of `run`.
    let (address, _private) = support::redis_at(pool.as_str().unwrap_or_default()).await?;
    *pool = address.into();

    // The example crate holds `rate_limit` too, which this config does not set up.
    let runtime = Runtime::builder()
        .only_plugins(["counter"])
        .start_json(&config.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let pool = runtime
        .selectors()
        .pool("redis_at_eight")
        .ok_or("the config has no pool `redis_at_eight`")?;

    let mut before = Vec::new();
    for id in distinct_ids() {
        before.push(read(&pool, id).await?.unwrap_or(0));
    }

    let pipeline = Pipeline::new(&runtime, ["counter"]).map_err(|e| e.to_string())?;
    for id in IDS {
        let request = http::Request::builder()
            .uri("/hello")
            .header("x-id", id)
            .body(bytes::Bytes::new())
            .map_err(|e| e.to_string())?;
        let response = pipeline.run(request, backend).await;
        println!("response for X-Id {id}: {}", response.status());
    }

    println!("counters in db 8:");
    for (id, before) in distinct_ids().into_iter().zip(before) {
        let now = read(&pool, id).await?.unwrap_or(0);
        println!("  {} = {now} (+{} this run)", counter_key(id), now - before);
    }
    runtime.shutdown().await;
    Ok(())
}

/// The counter for `id`.
async fn read(pool: &RedisPool, id: &str) -> Result<Option<i64>, String> {
    pool.clone()
        .get(counter_key(id))
        .await
        .map_err(|e| e.to_string())
}

/// The backend: echoes the caller's `X-Id` on its response, as the seed's backend does.
async fn backend(request: Request) -> Response {
    let mut response = Response::new(bytes::Bytes::from_static(b"hello\n"));
    if let Some(id) = request.headers().get("x-id") {
        response.headers_mut().insert("x-id", id.clone());
    }
    response
}

fn distinct_ids() -> Vec<&'static str> {
    let mut ids = IDS.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}
