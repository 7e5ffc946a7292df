//! The tower layer around an axum service: hooks run in order, bodies are visible to plugins,
//! and plugin errors become error responses rather than panics.

use axum::Router;
use axum::body::Body;
use http::StatusCode;
use http_body_util::BodyExt;
use redplug::prelude::*;
use redplug_runtime::{Pipeline, PluginLayer, Runtime};
use tower::ServiceExt;

mod support;

/// Refuses requests that carry `x-deny`, with the status it chose.
#[derive(Plugin)]
#[plugin(name = "guard")]
struct Guard;

impl Middleware for Guard {
    const BODIES: Bodies = Bodies::REQUEST;

    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        if request.headers().contains_key("x-deny") {
            return Err(PluginError::new("denied by policy").with_status(StatusCode::FORBIDDEN));
        }
        // Plugins see the buffered body.
        let upper = String::from_utf8_lossy(request.body()).to_uppercase();
        *request.body_mut() = upper.into();
        Ok(Flow::Continue)
    }
}

/// Fails on responses the backend marked, without choosing a status.
#[derive(Plugin)]
#[plugin(name = "fragile")]
struct Fragile;

impl Middleware for Fragile {
    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        if response.headers().contains_key("x-break") {
            return Err(PluginError::new("could not post-process"));
        }
        response
            .headers_mut()
            .insert("x-seen-by", "fragile".parse().unwrap());
        Ok(())
    }
}

async fn app() -> (Runtime, Router) {
    let runtime = Runtime::builder()
        .only_plugins(["guard", "fragile"])
        .start_json("{}")
        .await
        .unwrap();
    let pipeline = Pipeline::new(&runtime, ["guard", "fragile"]).unwrap();
    let router = Router::new()
        .fallback(|request: axum::extract::Request| async move {
            let broken = request.headers().contains_key("x-break-response");
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut response = http::Response::new(Body::from(body));
            if broken {
                response
                    .headers_mut()
                    .insert("x-break", "1".parse().unwrap());
            }
            response
        })
        .layer(PluginLayer::new(pipeline));
    (runtime, router)
}

async fn send(
    router: &Router,
    request: http::Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn hooks_see_and_change_buffered_bodies() {
    let (_runtime, router) = app().await;
    let (status, headers, body) = send(
        &router,
        http::Request::post("/echo")
            .body(Body::from("hello"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "HELLO", "the backend got the body the plugin rewrote");
    assert_eq!(headers.get("x-seen-by").unwrap(), "fragile");
}

#[tokio::test]
async fn plugin_errors_become_responses_with_their_status() {
    let (_runtime, router) = app().await;
    let denied = http::Request::get("/")
        .header("x-deny", "1")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, denied).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body.trim(),
        "Forbidden",
        "the message stays in the log, not in the body"
    );

    let breaking = http::Request::get("/")
        .header("x-break-response", "1")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&router, breaking).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

// ---------------------------------------------------------------------------------------------
// Over real HTTP: a backend server, a gateway server with the layer, and a client, all on
// loopback, so that hyper's own framing is what reads the bodies.

mod over_http {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::response::IntoResponse;
    use bytes::Bytes;
    use http::{StatusCode, Uri};
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use redplug::prelude::*;
    use redplug_runtime::Pipeline;
    use redplug_runtime::PluginLayer;
    use redplug_runtime::Runtime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::support::Logs;

    type HttpClient = Client<HttpConnector, Body>;

    /// Replaces the request body with `x-new-request-body`, and the response body with the
    /// `x-new-response-body` the backend echoes back; panics on `x-panic`.
    #[derive(Plugin)]
    #[plugin(name = "reshape")]
    struct Reshape;

    impl Middleware for Reshape {
        const BODIES: Bodies = Bodies::BOTH;

        async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
            if request.headers().contains_key("x-panic") {
                panic!("reshape was told to panic");
            }
            if let Some(body) = request.headers().get("x-new-request-body") {
                *request.body_mut() = Bytes::copy_from_slice(body.as_bytes());
            }
            Ok(Flow::Continue)
        }

        async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
            if let Some(body) = response.headers().get("x-new-response-body") {
                *response.body_mut() = Bytes::copy_from_slice(body.as_bytes());
            }
            Ok(())
        }
    }

    async fn serve(router: Router) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// A backend that answers with the body it read, the `Content-Length` it was sent in
    /// `x-sent-length`, and the `x-new-response-body` header of the request.
    async fn backend() -> SocketAddr {
        serve(
            Router::new().fallback(|request: axum::extract::Request| async move {
                let sent = request.headers().get("content-length").cloned();
                let new_body = request.headers().get("x-new-response-body").cloned();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let mut response = http::Response::new(Body::from(body));
                if let Some(sent) = sent {
                    response.headers_mut().insert("x-sent-length", sent);
                }
                if let Some(new_body) = new_body {
                    response
                        .headers_mut()
                        .insert("x-new-response-body", new_body);
                }
                response
            }),
        )
        .await
    }

    async fn proxy(
        State((client, backend)): State<(HttpClient, SocketAddr)>,
        mut request: axum::extract::Request,
    ) -> axum::response::Response {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = format!("http://{backend}{path}").parse::<Uri>().unwrap();
        match client.request(request).await {
            Ok(response) => response.map(Body::new).into_response(),
            Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
        }
    }

    /// A gateway in front of a fresh backend with the `reshape` plugin, and a client.
    async fn gateway() -> (Runtime, SocketAddr, HttpClient) {
        let runtime = Runtime::builder()
            .only_plugins(["reshape"])
            .start_json("{}")
            .await
            .unwrap();
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let pipeline = Pipeline::new(&runtime, ["reshape"]).unwrap();
        let router = Router::new()
            .fallback(proxy)
            .with_state((client.clone(), backend().await))
            .layer(PluginLayer::new(pipeline));
        (runtime, serve(router).await, client)
    }

    /// Sends `body` with `headers`; returns status, response headers and body, failing the test
    /// if the exchange takes longer than 5 s (a body shorter than its length hangs).
    async fn send(
        client: &HttpClient,
        gateway: SocketAddr,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut request = http::Request::post(format!("http://{gateway}/"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body)).unwrap();
        let exchange = async {
            let response = client.request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (
                parts.status,
                parts.headers,
                String::from_utf8_lossy(&body).into_owned(),
            )
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("the exchange did not finish: the body and its length disagree")
    }

    #[tokio::test]
    async fn a_request_body_a_plugin_lengthens_or_shortens_reaches_the_backend_whole() {
        let (_runtime, gateway, client) = gateway().await;
        for new_body in ["a much longer body than the one the client sent", "hi"] {
            let (status, headers, body) = send(
                &client,
                gateway,
                &[("x-new-request-body", new_body)],
                "hello world",
            )
            .await;
            println!("request body replaced with {new_body:?}: backend read {body:?}");
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, new_body, "the backend read the plugin's body whole");
            assert_eq!(
                headers.get("x-sent-length").unwrap(),
                &new_body.len().to_string(),
                "the backend was told the new length"
            );
        }
    }

    #[tokio::test]
    async fn a_response_body_a_plugin_lengthens_or_shortens_reaches_the_client_whole() {
        let (_runtime, gateway, client) = gateway().await;
        for new_body in ["a response body much longer than the request's", "ok"] {
            let (status, headers, body) = send(
                &client,
                gateway,
                &[("x-new-response-body", new_body)],
                "hello world",
            )
            .await;
            println!("response body replaced with {new_body:?}: client read {body:?}");
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, new_body);
            assert_eq!(
                headers.get("content-length").unwrap(),
                &new_body.len().to_string()
            );
        }
    }

    /// Log lines at every level, written where the test can read them. The test runs on one
    /// thread (a current-thread runtime), so the thread-local subscriber sees the servers too.
    fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = super::support::log_subscriber(&logs, tracing::Level::DEBUG);
        (logs, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_plugin_gets_a_500_that_names_it_and_the_host_goes_on() {
        let (logs, _guard) = capture_logs();
        let (_runtime, gateway, client) = gateway().await;
        let (status, _, body) = send(&client, gateway, &[("x-panic", "1")], "boom").await;
        let (after, _, echoed) = send(&client, gateway, &[], "still here").await;
        let logs = logs.text();
        println!("a panicking plugin answered {status} {body:?}; the next request {after}");
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!((after, echoed.as_str()), (StatusCode::OK, "still here"));
        let line = logs
            .lines()
            .find(|line| line.contains("plugin panicked"))
            .unwrap_or_else(|| panic!("no log line for the panic in:\n{logs}"));
        assert!(
            line.contains("ERROR")
                && line.contains("plugin=\"reshape\"")
                && line.contains("hook=\"on_request\"")
                && line.contains("reshape was told to panic"),
            "{line}"
        );
    }

    /// Clients that hang up halfway through an upload are the client's doing: they are logged
    /// at debug level only, so that no client can fill the log with warnings.
    #[tokio::test(flavor = "current_thread")]
    async fn clients_that_hang_up_mid_upload_do_not_flood_the_log() {
        let (logs, _guard) = capture_logs();
        let (_runtime, gateway, client) = gateway().await;
        for _ in 0..20 {
            let mut stream = TcpStream::connect(gateway).await.unwrap();
            stream
                .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nabc")
                .await
                .unwrap();
            drop(stream);
        }
        // A request after them is answered, which also lets the server finish with them.
        let (status, _, _) = send(&client, gateway, &[], "after").await;
        assert_eq!(status, StatusCode::OK);
        // A bounded wait for the hung-up connections' handlers to log what they log.
        let mut probe = TcpStream::connect(gateway).await.unwrap();
        probe
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), probe.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        let logs = logs.text();
        let loud: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .collect();
        let quiet = logs
            .matches("request body refused before the plugins")
            .count();
        println!(
            "20 clients hung up mid-upload: {quiet} debug lines, {} louder",
            loud.len()
        );
        assert!(loud.is_empty(), "{loud:#?}");
        assert!(quiet >= 1, "the hang-ups were not logged at all:\n{logs}");
    }
}
