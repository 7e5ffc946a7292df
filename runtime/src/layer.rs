//! A `tower::Layer` that runs a plugin [`Pipeline`] around any HTTP service, so plugins work
//! in an axum or hyper gateway.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use http_body::Body;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use crate::pipeline::Pipeline;
use redplug::{Request, Response};

/// Wraps a service so every request runs through a plugin [`Pipeline`]: `on_request` hooks
/// before the service, `on_response` hooks after it. Bodies are buffered, since plugins see
/// them as [`Bytes`].
#[derive(Clone)]
pub struct PluginLayer {
    pipeline: Pipeline,
}

impl PluginLayer {
    /// A layer running `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

impl<S> Layer<S> for PluginLayer {
    type Service = PluginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PluginService {
            inner,
            pipeline: self.pipeline.clone(),
        }
    }
}

/// The service [`PluginLayer`] produces.
#[derive(Clone)]
pub struct PluginService<S> {
    inner: S,
    pipeline: Pipeline,
}

impl<S> fmt::Debug for PluginService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginService")
            .field("plugins", &self.pipeline.names())
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<http::Request<B>> for PluginService<S>
where
    S: Service<http::Request<B>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: fmt::Display,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<B>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request (tower's usual dance).
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
            let request = match buffer(request).await {
                Ok(request) => request,
                Err(message) => {
                    // The client hung up or sent a broken body: its own doing, and any client
                    // could fill the log with it, so it is not a warning.
                    tracing::debug!(%message, "could not read a request body");
                    return Ok(plain(StatusCode::BAD_REQUEST, message));
                }
            };
            let response = pipeline
                .run(request, |request| async move {
                    let (parts, body) = request.into_parts();
                    let request = http::Request::from_parts(parts, B::from(body));
                    let Ok(response) = inner.oneshot(request).await;
                    match buffer_response(response).await {
                        Ok(response) => response,
                        Err(message) => {
                            tracing::warn!(%message, "could not read a backend's response body");
                            text(StatusCode::BAD_GATEWAY, message)
                        }
                    }
                })
                .await;
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(parts, B::from(body)))
        })
    }
}

async fn buffer<B>(request: http::Request<B>) -> Result<Request, String>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("could not read the request body: {e}"))?
        .to_bytes();
    Ok(http::Request::from_parts(parts, bytes))
}

async fn buffer_response<B>(response: http::Response<B>) -> Result<Response, String>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("could not read the backend's response body: {e}"))?
        .to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}

fn text(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Bytes::from(message + "\n"));
    *response.status_mut() = status;
    response
}

fn plain<B: From<Bytes>>(status: StatusCode, message: String) -> http::Response<B> {
    let (parts, body) = text(status, message).into_parts();
    http::Response::from_parts(parts, B::from(body))
}
