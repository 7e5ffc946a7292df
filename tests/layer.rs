//! The tower layer around an axum service: hooks run in order, bodies are visible to plugins,
//! and plugin errors become error responses rather than panics.

use axum::Router;
use axum::body::Body;
use http::StatusCode;
use http_body_util::BodyExt;
use redplug::prelude::*;
use redplug_runtime::Runtime;
use redplug_runtime::layer::PluginLayer;
use redplug_runtime::pipeline::Pipeline;
use tower::ServiceExt;

/// Refuses requests that carry `x-deny`, with the status it chose.
#[derive(Plugin)]
#[plugin(name = "guard")]
struct Guard;

impl Middleware for Guard {
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
