//! Running an ordered chain of plugins around a backend call.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};
use redplug::host::DynMiddleware;
use redplug::{Flow, PluginError, Request, Response};

use crate::Runtime;
use crate::error::UnknownPlugin;
use crate::registry::{PluginEntry, Scope};

/// An ordered list of plugins, resolved once. Requests run through `on_request` in order;
/// responses run through `on_response` in reverse order, like layers of an onion.
#[derive(Clone)]
pub struct Pipeline {
    plugins: Arc<[(&'static str, Arc<dyn DynMiddleware>)]>,
    /// Where the chain runs, for logs: `service`, or an endpoint or backend.
    scope: Arc<str>,
}

impl Pipeline {
    /// The service-level plugins called `names`, in that order. (The chains that the config
    /// lists per endpoint and backend are [`Endpoint::chain`](crate::Endpoint::chain) and
    /// [`Backend::chain`](crate::Backend::chain).)
    pub fn new<'a>(
        runtime: &Runtime,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, UnknownPlugin> {
        let mut plugins = Vec::new();
        for name in names {
            let Some(plugin) = runtime.plugin(name) else {
                let known: Vec<&str> = runtime.plugins().map(|p| p.name()).collect();
                return Err(UnknownPlugin::new(name, &known));
            };
            plugins.push((plugin.name(), plugin.middleware().clone()));
        }
        Ok(Self {
            plugins: plugins.into(),
            scope: Arc::from(Scope::SERVICE),
        })
    }

    /// The chain of the instances `entries`, running at `scope`.
    pub(crate) fn of(scope: Arc<str>, entries: &[PluginEntry]) -> Self {
        let plugins: Vec<_> = entries
            .iter()
            .map(|entry| (entry.registration.name, entry.middleware.clone()))
            .collect();
        Self {
            plugins: plugins.into(),
            scope,
        }
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|(name, _)| *name).collect()
    }

    /// Where the chain runs: `service` for one built with [`Pipeline::new`], or the endpoint
    /// (`GET /v1/users/{id}`) or backend (`GET /v1/users/{id} backend 0`) it belongs to.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Whether the chain has no plugin.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Runs `request` through every plugin and `backend`. A plugin that answers early skips
    /// the later plugins' `on_request` and the backend; only the plugins that saw the request
    /// see the response. A plugin error becomes an error response, and so does a plugin that
    /// panics (it is not called again for that request); the host and other requests go on.
    ///
    /// When plugins change the length of a body, its `Content-Length` is set to the new length
    /// (and any `Transfer-Encoding` dropped), so that the backend and the client read exactly
    /// the body they are given.
    pub async fn run<F, Fut>(&self, mut request: Request, backend: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let mut entered = 0;
        let mut response = 'respond: {
            let sent = request.body().len();
            for (name, plugin) in self.plugins.iter() {
                entered += 1;
                let hook = AssertUnwindSafe(plugin.on_request(&mut request)).catch_unwind();
                match hook.await {
                    Ok(Ok(Flow::Continue)) => {}
                    Ok(Ok(Flow::Respond(response))) => break 'respond response,
                    Ok(Err(error)) => {
                        break 'respond error_response(name, &self.scope, "on_request", &error);
                    }
                    Err(panic) => {
                        entered -= 1;
                        break 'respond panic_response(name, &self.scope, "on_request", &*panic);
                    }
                }
            }
            reframe(sent, request.body().len(), request.headers_mut());
            backend(request).await
        };
        let received = response.body().len();
        for (name, plugin) in self.plugins[..entered].iter().rev() {
            let hook = AssertUnwindSafe(plugin.on_response(&mut response)).catch_unwind();
            match hook.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    response = error_response(name, &self.scope, "on_response", &error);
                }
                Err(panic) => {
                    response = panic_response(name, &self.scope, "on_response", &*panic);
                }
            }
        }
        reframe(received, response.body().len(), response.headers_mut());
        response
    }
}

/// Makes `headers` describe a body of `now` bytes when plugins changed its length from `len`:
/// a body of the same length keeps its framing, which is still right.
fn reframe(len: usize, now: usize, headers: &mut HeaderMap) {
    if now == len {
        return;
    }
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(now));
}

/// The response for a failed hook: the error's status and a short body. The log line carries
/// the whole error chain: at error level when the plugin failed (5xx), at debug level when it
/// refused the client (4xx), which any client could otherwise use to flood the log.
pub(crate) fn error_response(
    plugin: &str,
    scope: &str,
    hook: &str,
    error: &PluginError,
) -> Response {
    let status = error.status();
    let status = if status.is_client_error() || status.is_server_error() {
        status
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if status.is_server_error() {
        tracing::error!(plugin, scope, hook, %status, error = %error, "plugin failed");
    } else {
        tracing::debug!(plugin, scope, hook, %status, error = %error, "plugin refused the request");
    }
    plain(status)
}

/// The response for a hook that panicked: 500, and a log line naming the plugin and hook.
pub(crate) fn panic_response(
    plugin: &str,
    scope: &str,
    hook: &str,
    panic: &(dyn Any + Send),
) -> Response {
    let message = panic_message(panic);
    tracing::error!(
        plugin,
        scope,
        hook,
        panic = message,
        "plugin panicked; answering 500"
    );
    plain(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn plain(status: StatusCode) -> Response {
    let body = format!("{}\n", status.canonical_reason().unwrap_or("plugin error"));
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
}
