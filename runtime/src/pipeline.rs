//! Running an ordered chain of plugins around a backend call.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use redplug::{DynMiddleware, Flow, PluginError, Request, Response};

use crate::Runtime;

/// An ordered list of plugins, resolved by name once. Requests run through `on_request` in
/// order; responses run through `on_response` in reverse order, like layers of an onion.
#[derive(Clone)]
pub struct Pipeline {
    plugins: Arc<[(&'static str, Arc<dyn DynMiddleware>)]>,
}

/// A pipeline named a plugin that is not registered.
#[derive(Debug, thiserror::Error)]
#[error("no plugin named `{name}` is registered{}; registered: {registered}", did_you_mean.as_ref().map(|g| format!(" (did you mean `{g}`?)")).unwrap_or_default())]
pub struct UnknownPlugin {
    /// The name asked for.
    pub name: String,
    /// A registered name close to it.
    pub did_you_mean: Option<String>,
    /// Every registered name, comma separated.
    pub registered: String,
}

impl Pipeline {
    /// The plugins called `names`, in that order.
    pub fn new<'a>(
        runtime: &Runtime,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, UnknownPlugin> {
        let mut plugins = Vec::new();
        for name in names {
            let Some(plugin) = runtime.plugin(name) else {
                let known: Vec<&str> = runtime.plugins().map(|p| p.name()).collect();
                return Err(UnknownPlugin {
                    name: name.to_owned(),
                    did_you_mean: crate::registry::closest(name, &known),
                    registered: known.join(", "),
                });
            };
            plugins.push((plugin.name(), plugin.middleware().clone()));
        }
        Ok(Self {
            plugins: plugins.into(),
        })
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|(name, _)| *name).collect()
    }

    /// Runs `request` through every plugin and `backend`. A plugin that answers early skips
    /// the later plugins' `on_request` and the backend; only the plugins that saw the request
    /// see the response. A plugin error becomes an error response, never a panic.
    pub async fn run<F, Fut>(&self, mut request: Request, backend: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let mut entered = 0;
        let mut response = 'respond: {
            for (name, plugin) in self.plugins.iter() {
                entered += 1;
                match plugin.on_request(&mut request).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Respond(response)) => break 'respond response,
                    Err(error) => break 'respond error_response(name, "on_request", &error),
                }
            }
            backend(request).await
        };
        for (name, plugin) in self.plugins[..entered].iter().rev() {
            if let Err(error) = plugin.on_response(&mut response).await {
                response = error_response(name, "on_response", &error);
            }
        }
        response
    }
}

/// The response for a failed hook: the error's status, a short body, and a log line with the
/// whole error chain.
pub fn error_response(plugin: &str, hook: &str, error: &PluginError) -> Response {
    tracing::error!(plugin, hook, status = %error.status(), error = %error, "plugin failed");
    let status = error.status();
    let body = format!("{}\n", status.canonical_reason().unwrap_or("plugin error"));
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = if status.is_client_error() || status.is_server_error() {
        status
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    response
}
