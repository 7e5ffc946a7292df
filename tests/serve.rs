//! `redplug serve`'s gateway, in process, against a real backend server on loopback and a real
//! `redis-server`: routing and parameters, what reaches the backend, per-endpoint chains,
//! 404/504/413/502, `/__health` and `/__debug/`, startup refusals, and a graceful stop with
//! requests in flight. (The `redplug` binary itself, with signals and memory measured, is
//! driven in `examples/plugins/tests/serve.rs`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request as AxumRequest};
use axum::response::IntoResponse;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redplug::prelude::*;
use redplug_runtime::Runtime;
use redplug_runtime::serve::{Gateway, GatewayError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod support;

use support::{Logs, log_subscriber};

redplug::link!(redplug_example_plugins);

/// Marks the request to the backend and the response to the client with its `tag`.
#[derive(Plugin)]
#[plugin(name = "tag")]
struct Tag {
    #[plugin(config)]
    config: TagConfig,
}

#[derive(serde::Deserialize, Default)]
struct TagConfig {
    tag: String,
}

impl Middleware for Tag {
    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        let value = self
            .config
            .tag
            .parse()
            .map_err(|_| PluginError::new("tag"))?;
        request.headers_mut().append("x-tag", value);
        Ok(Flow::Continue)
    }

    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        let value = self
            .config
            .tag
            .parse()
            .map_err(|_| PluginError::new("tag"))?;
        response.headers_mut().append("x-tagged", value);
        Ok(())
    }
}

/// Reads both bodies: says how long each was.
#[derive(Plugin)]
#[plugin(name = "sizer")]
struct Sizer;

impl Middleware for Sizer {
    const BODIES: Bodies = Bodies::BOTH;

    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        let length = request.body().len();
        request
            .headers_mut()
            .insert("x-request-bytes", length.into());
        Ok(Flow::Continue)
    }

    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        let length = response.body().len();
        response
            .headers_mut()
            .insert("x-response-bytes", length.into());
        Ok(())
    }
}

/// Every log line of this test binary, at debug level and above. One global subscriber rather
/// than one per test: tracing caches per call site whether anyone listens, and tests running in
/// parallel without a subscriber would race a thread-local one out of that cache.
fn global_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        tracing::subscriber::set_global_default(log_subscriber(&logs, tracing::Level::DEBUG))
            .expect("no other global subscriber in this test binary");
        logs
    })
    .clone()
}

/// A backend on loopback: `/echo/...` answers with what it received as JSON, `/slow` after
/// three seconds, `/bytes/{n}` with `n` bytes, `/status/{code}` with that status.
async fn backend() -> SocketAddr {
    let app = Router::new()
        .route("/echo/{*rest}", axum::routing::any(echo))
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow"
            }),
        )
        .route(
            "/bytes/{n}",
            axum::routing::get(|Path(n): Path<usize>| async move { vec![b'x'; n] }),
        )
        .route(
            "/status/{code}",
            axum::routing::get(|Path(code): Path<u16>| async move {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
                (status, [("x-backend", "yes")], "as asked")
            }),
        );
    serve(app).await
}

async fn echo(request: AxumRequest) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    // Every value of each header, comma separated.
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .keys()
        .map(|name| {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|value| value.to_str().unwrap_or("(bytes)"))
                .collect();
            (name.to_string(), Value::from(values.join(", ")))
        })
        .collect();
    // Small bodies as text; large ones by their length, to keep the answer small.
    let body = if body.len() <= 64 {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        format!("({} bytes)", body.len())
    };
    let echoed = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": body,
    });
    (
        [("x-backend", "echo"), ("content-type", "application/json")],
        echoed.to_string(),
    )
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A gateway config on a free loopback port: `endpoints` with `backend` as the default host.
fn config(redis: &RedisServer, backend: SocketAddr, endpoints: Value) -> String {
    json!({
        "version": 3,
        "port": 0,
        "listen_ip": "127.0.0.1",
        "timeout": "1s",
        "debug_endpoint": true,
        "host": [format!("http://{backend}")],
        "extra_config": {
            "redis": { "connection_pools": [
                { "name": "ratelimit_counters", "address": redis.addr() }
            ] },
            "plugin/redplug": { "max_body_bytes": 1024 }
        },
        "endpoints": endpoints,
    })
    .to_string()
}

/// A no-op endpoint at `path` calling `url_pattern` on the default host.
fn endpoint(path: &str, url_pattern: &str, extra: Value) -> Value {
    let mut endpoint = json!({
        "endpoint": path,
        "output_encoding": "no-op",
        "backend": [{ "url_pattern": url_pattern, "encoding": "no-op" }],
    });
    if let (Some(endpoint), Value::Object(extra)) = (endpoint.as_object_mut(), extra) {
        endpoint.extend(extra);
    }
    endpoint
}

struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    runtime: Runtime,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.done.await;
        self.runtime.shutdown().await;
    }
}

async fn start(plugins: &[&str], json: &str, grace: Duration) -> Running {
    let runtime = Runtime::builder()
        .only_plugins(plugins.iter().copied())
        .start_json(json)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::new(&runtime).unwrap_or_else(|e| panic!("{e}"));
    let listener = gateway.bind().await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let done = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        gateway.serve(listener, stopped, grace).await.unwrap();
    });
    Running {
        address,
        stop: Some(stop),
        done,
        runtime,
    }
}

type HttpClient = Client<HttpConnector, Body>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(client: &HttpClient, request: http::Request<Body>) -> Answer {
    let response = client.request(request).await.expect("the gateway answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(client: &HttpClient, url: String, headers: &[(&str, &str)]) -> Answer {
    let mut request = http::Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(client, request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn routes_substitute_parameters_and_pass_only_what_the_endpoint_allows() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([
            endpoint("/v1/users/{id}/posts/{post}", "/echo/users/{id}?post={post}", json!({
                "input_headers": ["X-Api-Key"],
                "input_query_strings": ["page"],
            })),
            endpoint("/v1/users/{id}", "/echo/plain/{id}", json!({})),
            {"endpoint": "/v1/users/{id}", "method": "POST", "output_encoding": "no-op",
             "input_headers": ["*"],
             "backend": [{"url_pattern": "/echo/created/{id}", "encoding": "no-op", "method": "PUT"}]},
        ]),
    );
    let gateway = start(&[], &json, Duration::from_secs(1)).await;
    let client = client();
    let base = format!("http://{}", gateway.address);

    let answer = get(
        &client,
        format!("{base}/v1/users/42/posts/7?page=2&secret=s"),
        &[("x-api-key", "k"), ("cookie", "c=1")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.headers["x-backend"], "echo",
        "backend headers pass through"
    );
    let seen = answer.json();
    println!("the backend saw {seen:#}");
    assert_eq!(seen["path"], "/echo/users/42");
    assert_eq!(seen["query"], "post=7&page=2");
    assert_eq!(seen["headers"]["x-api-key"], "k");
    assert!(
        seen["headers"].get("cookie").is_none(),
        "not in input_headers"
    );
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(
        seen["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("redplug/")
    );

    let plain = get(&client, format!("{base}/v1/users/9"), &[("x-api-key", "k")]).await;
    assert_eq!(plain.json()["path"], "/echo/plain/9");
    assert!(
        plain.json()["headers"].get("x-api-key").is_none(),
        "none by default"
    );

    let created = send(
        &client,
        http::Request::post(format!("{base}/v1/users/5"))
            .header("content-type", "text/plain")
            .header("cookie", "c=1")
            .body(Body::from("hello"))
            .unwrap(),
    )
    .await;
    let seen = created.json();
    assert_eq!(
        (seen["method"].as_str(), seen["path"].as_str()),
        (Some("PUT"), Some("/echo/created/5"))
    );
    assert_eq!(seen["body"], "hello");
    assert_eq!(
        seen["headers"]["cookie"], "c=1",
        "input_headers [\"*\"] passes everything"
    );

    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/users/5"),
        ("GET", "/v1/users"),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(&client, request).await.status,
            StatusCode::NOT_FOUND,
            "{method} {path}"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn each_endpoint_runs_its_own_chain_with_its_own_settings() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([
            endpoint("/strict", "/echo/strict", json!({"input_headers": ["X-Client-Id"],
                "extra_config": {"plugin/redplug": {
                "name": ["tag", "rate_limit"], "tag": {"tag": "strict"},
                "rate_limit": {"limit": 1, "window": "1m", "key_prefix": "strict"}}}})),
            {"endpoint": "/open", "output_encoding": "no-op",
             "extra_config": {"plugin/redplug": {"name": ["tag"], "tag": {"tag": "open"}}},
             "backend": [{"url_pattern": "/echo/open", "encoding": "no-op",
                 "extra_config": {"plugin/redplug": {"name": ["tag"], "tag": {"tag": "open-backend"}}}}]},
        ]),
    );
    let gateway = start(&["tag", "rate_limit"], &json, Duration::from_secs(1)).await;
    let client = client();
    let base = format!("http://{}", gateway.address);

    let first = get(&client, format!("{base}/strict"), &[("x-client-id", "a")]).await;
    let second = get(&client, format!("{base}/strict"), &[("x-client-id", "a")]).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(first.json()["headers"]["x-tag"], "strict");
    assert_eq!(first.headers["x-tagged"], "strict");

    for _ in 0..3 {
        let open = get(&client, format!("{base}/open"), &[("x-client-id", "a")]).await;
        assert_eq!(open.status, StatusCode::OK);
        // What the endpoint's plugins add reaches the backend, and the backend's instance
        // adds its own; the client's header is not let through.
        assert_eq!(open.json()["headers"]["x-tag"], "open, open-backend");
        assert!(open.json()["headers"].get("x-client-id").is_none());
        let tagged: Vec<&str> = open
            .headers
            .get_all("x-tagged")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            tagged,
            ["open-backend", "open"],
            "backend scope first, then the endpoint's"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn timeouts_limits_and_dead_backends_get_their_statuses() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let sized = json!({"extra_config": {"plugin/redplug": {"name": ["sizer"]}}});
    let json = config(
        &redis,
        backend,
        json!([
            endpoint("/slow", "/slow", json!({})),
            endpoint("/patient", "/slow", json!({"timeout": "5s"})),
            endpoint("/sized/{n}", "/bytes/{n}", sized.clone()),
            endpoint("/upload", "/echo/upload", {
                let mut extra = sized.clone();
                extra["method"] = json!("POST");
                extra
            }),
            endpoint("/roomy", "/echo/roomy", json!({"method": "POST", "extra_config": {
                "plugin/redplug": {"name": ["sizer"], "max_body_bytes": 4096}}})),
            {"endpoint": "/dead", "output_encoding": "no-op",
             "backend": [{"host": [format!("http://{dead}")], "url_pattern": "/", "encoding": "no-op"}]},
            endpoint("/teapot", "/status/418", json!({})),
        ]),
    );
    let logs = global_logs();
    let gateway = start(&["sizer"], &json, Duration::from_secs(1)).await;
    let client = client();
    let base = format!("http://{}", gateway.address);

    let started = Instant::now();
    let slow = get(&client, format!("{base}/slow"), &[]).await;
    let took = started.elapsed();
    println!("/slow: {} after {took:?}", slow.status);
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took < Duration::from_millis(1800),
        "the 1s timeout cut it: {took:?}"
    );
    let patient = get(&client, format!("{base}/patient"), &[]).await;
    assert_eq!(
        (patient.status, patient.body.as_str()),
        (StatusCode::OK, "slow")
    );

    let small = get(&client, format!("{base}/sized/1000"), &[]).await;
    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.headers["x-response-bytes"], "1000");
    let large = get(&client, format!("{base}/sized/5000"), &[]).await;
    assert_eq!(
        large.status,
        StatusCode::BAD_GATEWAY,
        "over the 1 KiB a plugin may read"
    );

    let post = |path: &str, bytes: usize| {
        http::Request::post(format!("{base}{path}"))
            .body(Body::from(vec![b'y'; bytes]))
            .unwrap()
    };
    let fits = send(&client, post("/upload", 1024)).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert_eq!(fits.json()["headers"]["x-request-bytes"], "1024");
    let too_large = send(&client, post("/upload", 1025)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let roomy = send(&client, post("/roomy", 4000)).await;
    assert_eq!(
        roomy.status,
        StatusCode::OK,
        "the endpoint's own max_body_bytes"
    );

    let dead = get(&client, format!("{base}/dead"), &[]).await;
    assert_eq!(dead.status, StatusCode::BAD_GATEWAY);
    let teapot = get(&client, format!("{base}/teapot"), &[]).await;
    assert_eq!(
        (
            teapot.status,
            teapot.headers["x-backend"].to_str().unwrap(),
            teapot.body.as_str()
        ),
        (StatusCode::IM_A_TEAPOT, "yes", "as asked"),
        "no-op: the backend's status, headers and body as they came"
    );
    gateway.stop().await;

    let logs = logs.text();
    for (scope, line) in [
        (
            "GET /slow",
            "the endpoint did not answer within its timeout; answering 504",
        ),
        (
            "GET /sized/{n}",
            "backend response body refused before the plugins",
        ),
        ("POST /upload", "request body refused before the plugins"),
        ("GET /dead backend 0", "backend call failed; answering 502"),
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains(line) && l.replace('"', "").contains(&format!("scope={scope}"))),
            "no `{line}` for {scope} in the log:\n{logs}"
        );
    }
}

#[tokio::test]
async fn health_and_debug_answer_as_krakend_s_do() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([endpoint("/self", "/__debug/self", json!({}))]),
    );
    // The endpoint's backend is the gateway itself: point the host at it once it is bound.
    let runtime = Runtime::builder()
        .registrations([])
        .start_json(&json)
        .await
        .unwrap();
    let probe = Gateway::new(&runtime).unwrap();
    let listener = probe.bind().await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(probe);
    runtime.shutdown().await;
    let json = json.replace(&format!("http://{backend}"), &format!("http://{address}"));
    let runtime = Runtime::builder()
        .registrations([])
        .start_json(&json)
        .await
        .unwrap();
    let gateway = Gateway::new(&runtime).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(gateway.serve(
        listener,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let client = client();

    let health = get(&client, format!("http://{address}/__health"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.headers["content-type"], "application/json");
    assert_eq!(health.json()["status"], "ok");
    let pong = get(&client, format!("http://{address}/self"), &[]).await;
    assert_eq!(
        (pong.status, pong.json()),
        (StatusCode::OK, json!({"message": "pong"}))
    );
    let _ = stop.send(());
    done.await.unwrap().unwrap();
    runtime.shutdown().await;
}

#[tokio::test]
async fn what_the_gateway_cannot_serve_is_refused_at_startup_with_paths() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([
            {"endpoint": "/two", "output_encoding": "no-op", "backend": [
                {"url_pattern": "/a", "encoding": "no-op"}, {"url_pattern": "/b", "encoding": "no-op"}]},
            {"endpoint": "/json", "backend": [{"url_pattern": "/a"}]},
            {"endpoint": "/v1/{id}", "output_encoding": "no-op",
             "backend": [{"url_pattern": "/users/{user}", "encoding": "no-op", "host": ["users:80"]}]},
            endpoint("/__health", "/a", json!({})),
        ]),
    );
    let runtime = Runtime::builder()
        .registrations([])
        .start_json(&json)
        .await
        .unwrap();
    let error = Gateway::new(&runtime).err().expect("refused");
    println!("{error}");
    let GatewayError::Config(errors) = &error else {
        panic!("expected config errors, got {error:?}");
    };
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "endpoints[0].backend",
            "endpoints[1].output_encoding",
            "endpoints[1].backend[0].encoding",
            "endpoints[2].backend[0].host[0]",
            "endpoints[2].backend[0].url_pattern",
            "endpoints[3].endpoint",
        ]
    );
    let text = error.to_string();
    for fragment in [
        "lists 2 backends; redplug serve proxies each endpoint to exactly one",
        "set \"output_encoding\": \"no-op\"",
        "uses {user}, which the endpoint's path does not define (the endpoint's are {id})",
        "GET /__health is served by an endpoint listed before",
    ] {
        assert!(text.contains(fragment), "no `{fragment}` in:\n{text}");
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_stop_lets_requests_in_flight_finish_within_the_grace_period() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([endpoint("/slow", "/slow", json!({"timeout": "5s"}))]),
    );
    let gateway = start(&[], &json, Duration::from_secs(10)).await;
    let address = gateway.address;
    let client = client();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, format!("http://{address}/slow"), &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(gateway.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopped accepting: a new connection is refused while the request in flight goes on.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "slow")
    );
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_grace_period_bounds_what_a_stop_waits_for() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([endpoint("/slow", "/slow", json!({"timeout": "5s"}))]),
    );
    let gateway = start(&[], &json, Duration::from_millis(500)).await;
    let address = gateway.address;
    let in_flight = tokio::spawn(async move {
        let client = client();
        client
            .request(
                http::Request::get(format!("http://{address}/slow"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    gateway.stop().await;
    let took = started.elapsed();
    println!("stopped after {took:?} with a request in flight");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let _ = in_flight.await;
}

#[tokio::test]
async fn slow_and_oversized_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let redis = RedisServer::start();
    let backend = backend().await;
    let mut config: Value = serde_json::from_str(&config(
        &redis,
        backend,
        json!([
            endpoint(
                "/buffered",
                "/echo/buffered",
                json!({"method": "POST",
                "extra_config": {"plugin/redplug": {"name": ["sizer"]}}})
            ),
            endpoint("/streamed", "/echo/streamed", json!({"method": "POST"})),
        ]),
    ))
    .unwrap();
    config["read_header_timeout"] = json!("1s");
    config["max_header_bytes"] = json!(16384);
    let gateway = start(&["sizer"], &config.to_string(), Duration::from_secs(1)).await;
    let address = gateway.address;

    /// Writes `sent`, then waits (at most 5 s) for what the gateway answers before it closes.
    async fn answer_to(address: SocketAddr, sent: &[u8]) -> (String, Duration) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let started = Instant::now();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
        let text = String::from_utf8_lossy(&reply);
        (
            text.lines().next().unwrap_or("(closed)").to_owned(),
            started.elapsed(),
        )
    }

    for path in ["/buffered", "/streamed"] {
        let head =
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten..");
        let (status, took) = answer_to(address, head.as_bytes()).await;
        println!("{path}, a body that stops after 10 of 100 bytes: {status} after {took:?}");
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{path}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    let (status, took) = answer_to(address, b"GET /streamed HTTP/1.1\r\nhost: x\r\n").await;
    println!("headers that never end: {status} after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "read_header_timeout cut it: {took:?}"
    );

    let huge = format!(
        "GET /streamed HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let (status, _) = answer_to(address, huge.as_bytes()).await;
    println!("40 kB of headers: {status}");
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_redis_server_and_health_stays_up() {
    let redis = RedisServer::start();
    let backend = backend().await;
    let json = config(
        &redis,
        backend,
        json!([endpoint(
            "/limited",
            "/echo/limited",
            json!({"extra_config": {"plugin/redplug": {
            "name": ["rate_limit"], "rate_limit": {"limit": 100}}}})
        )]),
    );
    let gateway = start(&["rate_limit"], &json, Duration::from_secs(1)).await;
    let client = client();
    let base = format!("http://{}", gateway.address);

    let ready = get(&client, format!("{base}/__ready"), &[]).await;
    println!("{}", ready.body);
    assert_eq!(ready.status, StatusCode::OK);
    let report = ready.json();
    assert_eq!(report["ready"], true);
    assert_eq!(report["connections"][0]["name"], "ratelimit_counters");
    assert_eq!(report["connections"][0]["required"], true);
    assert!(report["connections"][0]["round_trip_ms"].as_f64().is_some());

    redis.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let down = get(&client, format!("{base}/__ready"), &[]).await;
    println!("{}", down.body);
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.json()["connections"][0]["reachable"], false);
    let live = get(&client, format!("{base}/__health"), &[]).await;
    assert_eq!(
        live.status,
        StatusCode::OK,
        "liveness does not depend on Redis"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, format!("{base}/__ready"), &[]).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gateway.stop().await;
}
