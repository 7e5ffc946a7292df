//! What a plugin does: the [`Middleware`] hooks and the types they see.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

use crate::PluginError;

/// An HTTP request as a plugin sees it. Its body is the request's whole body when the plugin
/// declared that it reads request bodies ([`Middleware::BODIES`]), and empty otherwise: the
/// body then streams past the plugin to the backend.
pub type Request = http::Request<bytes::Bytes>;

/// An HTTP response as a plugin sees it. Its body is the response's whole body when the plugin
/// declared that it reads response bodies ([`Middleware::BODIES`]), and empty otherwise.
pub type Response = http::Response<bytes::Bytes>;

/// Which bodies a plugin reads or replaces, declared with [`Middleware::BODIES`].
///
/// Bodies stream through a gateway by default: a plugin sees headers, and its [`Request`] and
/// [`Response`] have empty bodies. A chain buffers a body (up to the host's limit) only when
/// one of its plugins declares that it needs it, so that large uploads and downloads cost the
/// gateway no memory unless a plugin must look at them.
///
/// ```
/// use redplug::prelude::*;
///
/// #[derive(Plugin)]
/// struct Checksum;
///
/// impl Middleware for Checksum {
///     // This plugin reads request bodies; responses stream past it.
///     const BODIES: Bodies = Bodies::REQUEST;
///
///     async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
///         let sum: u32 = request.body().iter().map(|&b| u32::from(b)).sum();
///         request.headers_mut().insert("x-sum", sum.into());
///         Ok(Flow::Continue)
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bodies {
    /// The plugin reads or replaces request bodies.
    pub request: bool,
    /// The plugin reads or replaces response bodies.
    pub response: bool,
}

impl Bodies {
    /// Headers only: bodies stream past the plugin (the default).
    pub const NONE: Bodies = Bodies {
        request: false,
        response: false,
    };
    /// Request bodies, buffered before `on_request`.
    pub const REQUEST: Bodies = Bodies {
        request: true,
        response: false,
    };
    /// Response bodies, buffered before `on_response`.
    pub const RESPONSE: Bodies = Bodies {
        request: false,
        response: true,
    };
    /// Both.
    pub const BOTH: Bodies = Bodies {
        request: true,
        response: true,
    };

    /// What a chain of plugins needs: every body any of them needs.
    pub const fn union(self, other: Bodies) -> Bodies {
        Bodies {
            request: self.request || other.request,
            response: self.response || other.response,
        }
    }
}

/// What happens after a plugin's [`Middleware::on_request`] hook.
#[derive(Debug)]
pub enum Flow {
    /// Hand the request on to the next plugin and then the backend.
    Continue,
    /// Answer now with this response; later plugins and the backend are skipped
    /// (rate limiting, caching, authentication failures).
    Respond(Response),
}

/// A plugin's behaviour around one request, and around its own life. Every hook defaults to
/// doing nothing, so a plugin implements only what it needs:
///
/// ```
/// use redplug::prelude::*;
/// use redplug::redis::AsyncCommands;
///
/// #[derive(Plugin)]
/// struct Counter {
///     #[redis_pool("redis_at_eight")]
///     redis: RedisPool,
/// }
///
/// impl Middleware for Counter {
///     async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
///         let id = response.headers().get("x-id").and_then(|v| v.to_str().ok()).unwrap_or("none");
///         let _: i64 = self.redis.clone().incr(format!("hits:{id}"), 1).await?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` derives `Plugin` but does not implement `redplug::Middleware`",
    label = "this plugin has no behaviour",
    note = "add `impl redplug::Middleware for {Self} {{}}` and override `on_request` or `on_response`; both default to doing nothing"
)]
pub trait Middleware: Send + Sync + 'static {
    /// The bodies this plugin reads or replaces; [`Bodies::NONE`] (headers only) unless the
    /// plugin says otherwise. A body the plugin did not ask for is empty in its hooks, and one
    /// it puts there is dropped (with a warning in the log): the original body goes on. A
    /// response the plugin answers with ([`Flow::Respond`]) is always sent whole.
    const BODIES: Bodies = Bodies::NONE;

    /// Runs before the request goes to the backend. Return [`Flow::Respond`] to answer early.
    fn on_request(
        &self,
        request: &mut Request,
    ) -> impl Future<Output = Result<Flow, PluginError>> + Send {
        let _ = request;
        Now(|| Ok(Flow::Continue))
    }

    /// Runs after the backend answered (or a plugin answered early), before the client sees it.
    fn on_response(
        &self,
        response: &mut Response,
    ) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = response;
        Now(|| Ok(()))
    }

    /// Runs once after the plugin is built with its connections and settings, before its
    /// first request: load a script, warm a cache, check a key space. An error stops the
    /// gateway's startup with a message naming the plugin and where it runs.
    fn init(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        Now(|| Ok(()))
    }

    /// Runs once when the runtime shuts down, after requests stopped and before its
    /// connections close: flush what the plugin buffered, release what it holds.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        Now(|| ())
    }
}

/// The default hooks' future: ready at once and zero-sized, so boxing it for the runtime
/// allocates nothing. (An `async` block has a state byte, and every box of it is a heap
/// allocation per request for a hook the plugin does not even have.)
struct Now<F>(F);

impl<T, F: Fn() -> T + Unpin> Future for Now<F> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        Poll::Ready((self.0)())
    }
}

/// [`Middleware`] behind a pointer, so a host can keep plugins of different types in one list
/// (see [`crate::host`]). Implemented for every `Middleware`.
pub trait DynMiddleware: Send + Sync + 'static {
    /// [`Middleware::on_request`], boxed.
    fn on_request<'a>(
        &'a self,
        request: &'a mut Request,
    ) -> BoxFuture<'a, Result<Flow, PluginError>>;
    /// [`Middleware::on_response`], boxed.
    fn on_response<'a>(
        &'a self,
        response: &'a mut Response,
    ) -> BoxFuture<'a, Result<(), PluginError>>;
    /// [`Middleware::BODIES`].
    fn bodies(&self) -> Bodies;
    /// [`Middleware::init`], boxed.
    fn init(&self) -> BoxFuture<'_, Result<(), PluginError>>;
    /// [`Middleware::shutdown`], boxed.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl<T: Middleware> DynMiddleware for T {
    fn on_request<'a>(
        &'a self,
        request: &'a mut Request,
    ) -> BoxFuture<'a, Result<Flow, PluginError>> {
        Box::pin(Middleware::on_request(self, request))
    }

    fn on_response<'a>(
        &'a self,
        response: &'a mut Response,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(Middleware::on_response(self, response))
    }

    fn bodies(&self) -> Bodies {
        T::BODIES
    }

    fn init(&self) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(Middleware::init(self))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Middleware::shutdown(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;
    impl Middleware for Idle {}

    #[test]
    fn default_hooks_allocate_nothing() {
        let mut request = Request::new(bytes::Bytes::new());
        let mut response = Response::new(bytes::Bytes::new());
        assert_eq!(size_of_val(&Middleware::on_request(&Idle, &mut request)), 0);
        assert_eq!(
            size_of_val(&Middleware::on_response(&Idle, &mut response)),
            0
        );
    }

    #[test]
    fn default_hooks_continue_and_succeed_at_once() {
        use futures_util::FutureExt;
        let mut request = Request::new(bytes::Bytes::new());
        let mut response = Response::new(bytes::Bytes::new());
        let flow = DynMiddleware::on_request(&Idle, &mut request).now_or_never();
        assert!(matches!(flow, Some(Ok(Flow::Continue))), "{flow:?}");
        let done = DynMiddleware::on_response(&Idle, &mut response).now_or_never();
        assert!(matches!(done, Some(Ok(()))), "{done:?}");
    }
}
