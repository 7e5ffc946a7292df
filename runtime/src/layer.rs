//! A `tower::Layer` that runs a plugin [`Pipeline`] around any HTTP service, so plugins work
//! in an axum or hyper gateway.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::Body;
use tower::{Layer, Service, ServiceExt};

use crate::pipeline::{BodyLimits, BoxError, Pipeline};

/// Wraps a service so every request runs through a plugin [`Pipeline`]: `on_request` hooks
/// before the service, `on_response` hooks after it.
///
/// Bodies stream through unless a plugin of the pipeline declared that it reads them
/// ([`redplug::Bodies`]); such a body is buffered first, within [`BodyLimits`] (4 MiB and 2 s
/// unless [`PluginLayer::body_limits`] says otherwise). See [`Pipeline::run_streaming`].
#[derive(Clone)]
pub struct PluginLayer {
    pipeline: Pipeline,
    limits: BodyLimits,
}

impl PluginLayer {
    /// A layer running `pipeline`, with the default [`BodyLimits`].
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            limits: BodyLimits::default(),
        }
    }

    /// The limits of the bodies the pipeline's plugins read.
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.limits = limits;
        self
    }
}

impl<S> Layer<S> for PluginLayer {
    type Service = PluginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PluginService {
            inner,
            pipeline: self.pipeline.clone(),
            limits: self.limits,
        }
    }
}

/// The service [`PluginLayer`] produces.
#[derive(Clone)]
pub struct PluginService<S> {
    inner: S,
    pipeline: Pipeline,
    limits: BodyLimits,
}

impl<S> fmt::Debug for PluginService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginService")
            .field("plugins", &self.pipeline.names())
            .field("limits", &self.limits)
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
    B::Error: Into<BoxError>,
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
        let limits = self.limits;
        Box::pin(async move {
            let response = pipeline
                .run_streaming(request, limits, |request| async move {
                    let Ok(response) = inner.oneshot(request).await;
                    response
                })
                .await;
            Ok(response)
        })
    }
}
