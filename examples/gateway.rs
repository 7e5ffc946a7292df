//! A small gateway: axum on loopback, proxying to a local backend through redplug's tower
//! layer with the `rate_limit` and `counter` plugins. It sends real HTTP requests to itself,
//! prints what came back and the counters, and exits.
//!
//! ```text
//! cargo run --example gateway
//! ```

use std::process::ExitCode;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis::AsyncCommands;
use redplug_runtime::Pipeline;
use redplug_runtime::PluginLayer;
use redplug_runtime::Runtime;
use serde_json::json;
use tokio::net::TcpListener;

mod support;

redplug::link!(redplug_example_plugins);

type HttpClient = Client<HttpConnector, Body>;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_logging();
    support::exit(run().await)
}

async fn run() -> Result<(), String> {
    let (address, _private) = support::redis_at("localhost:6379").await?;
    let run_id = std::process::id();
    let config = json!({
        "version": 3,
        "extra_config": {
            "redis": { "connection_pools": [
                { "name": "redis_at_eight", "address": address, "db": 8 },
                { "name": "ratelimit_counters", "address": address, "db": 3 }
            ] },
            "plugin/redplug": { "rate_limit": { "limit": 3, "window": "1m" } }
        }
    });
    let runtime = Runtime::from_json(&config.to_string())
        .await
        .map_err(|e| e.to_string())?;

    // The backend: answers every path, echoing the caller's X-Id like the seed's backend.
    let backend = Router::new().fallback(|request: Request| async move {
        let id = request.headers().get("x-id").cloned();
        let mut response = format!("backend saw {}\n", request.uri().path()).into_response();
        if let Some(id) = id {
            response.headers_mut().insert("x-id", id);
        }
        response
    });
    let backend_addr = serve(backend).await?;

    // The gateway: proxies everything to the backend, with the plugins around it.
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let pipeline = Pipeline::new(&runtime, ["rate_limit", "counter"]).map_err(|e| e.to_string())?;
    let gateway = Router::new()
        .fallback(proxy)
        .with_state((client.clone(), backend_addr))
        .layer(PluginLayer::new(pipeline));
    let gateway_addr = serve(gateway).await?;
    println!("gateway on http://{gateway_addr}, backend on http://{backend_addr}");

    let mut statuses = Vec::new();
    for (client_id, x_id) in [
        ("alice", "a"),
        ("alice", "a"),
        ("alice", "b"),
        ("alice", "a"),
        ("bob", "a"),
    ] {
        let request = hyper::Request::get(format!("http://{gateway_addr}/hello"))
            .header("x-client-id", format!("{client_id}-{run_id}"))
            .header("x-id", format!("{x_id}-{run_id}"))
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        println!(
            "GET /hello as {client_id} (X-Id {x_id}): {}",
            response.status()
        );
        statuses.push(response.status().as_u16());
    }

    let mut pool = runtime
        .selectors()
        .pool("redis_at_eight")
        .ok_or("no pool redis_at_eight")?;
    for x_id in ["a", "b"] {
        let key = format!("test:from-resp-modifier:{x_id}-{run_id}");
        let count: Option<i64> = AsyncCommands::get(&mut pool, &key)
            .await
            .map_err(|e| e.to_string())?;
        println!("{key} = {}", count.unwrap_or(0));
    }
    println!("statuses: {statuses:?}");
    runtime.shutdown().await;
    Ok(())
}

/// Serves `router` on a free loopback port in the background.
async fn serve(router: Router) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("server on {addr} stopped: {error}");
        }
    });
    Ok(addr)
}

/// Forwards a request to the backend with the same method, path, headers and body.
async fn proxy(
    State((client, backend)): State<(HttpClient, std::net::SocketAddr)>,
    mut request: Request,
) -> Response {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{backend}{path}").parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    *request.uri_mut() = uri;
    match client.request(request).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("backend unreachable: {error}"),
        )
            .into_response(),
    }
}
