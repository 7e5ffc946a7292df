//! Running an ordered chain of plugins around a backend call.
//!
//! Each plugin sees only the bodies it declared ([`redplug::Bodies`]): the others see an empty
//! body, and what they put there is dropped. [`Pipeline::run`] takes bodies that are already in
//! memory; [`Pipeline::run_streaming`] takes any `http_body::Body` and buffers a body (up to
//! [`BodyLimits`]) only when some plugin of the chain declared it, streaming it otherwise.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use redplug::host::DynMiddleware;
use redplug::{Bodies, Flow, PluginError, Request, Response};

use crate::Runtime;
use crate::error::UnknownPlugin;
use crate::registry::{PluginEntry, Scope};

/// An ordered list of plugins, resolved once. Requests run through `on_request` in order;
/// responses run through `on_response` in reverse order, like layers of an onion.
#[derive(Clone)]
pub struct Pipeline {
    links: Arc<[Link]>,
    /// Every body some plugin of the chain reads.
    bodies: Bodies,
    /// Where the chain runs, for logs: `service`, or an endpoint or backend.
    scope: Arc<str>,
}

/// One plugin of a chain.
struct Link {
    name: &'static str,
    plugin: Arc<dyn DynMiddleware>,
    bodies: Bodies,
    /// Set once this plugin was caught putting a body where it declared none, so that the
    /// warning is logged once per plugin and chain, not once per request.
    warned: AtomicBool,
}

/// The error of a body that a chain reads.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much of a body a chain may buffer for its plugins, and how long reading it may take.
///
/// Only bodies that a plugin of the chain declared ([`redplug::Bodies`]) are buffered; the
/// others stream and are not bounded here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest body a chain buffers, in bytes. A larger request is answered with
    /// `413 Payload Too Large`; a larger backend response becomes `502 Bad Gateway`.
    pub max_bytes: usize,
    /// How long reading a buffered body may take. A request body slower than this is answered
    /// with `408 Request Timeout`; a backend response body with `504 Gateway Timeout`.
    pub read_timeout: Duration,
}

impl BodyLimits {
    /// The default limit of a buffered body: 4 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
    /// The default time a buffered body may take to arrive: 2 s, KrakenD's default endpoint
    /// timeout.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
        }
    }
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
                let known: Vec<&str> = runtime.plugins().iter().map(|p| p.name()).collect();
                return Err(UnknownPlugin::new(name, &known));
            };
            plugins.push((plugin.name(), plugin.middleware().clone()));
        }
        Ok(Self::from_links(Arc::from(Scope::SERVICE), plugins))
    }

    /// The chain of the instances `entries`, running at `scope`.
    pub(crate) fn of(scope: Arc<str>, entries: &[PluginEntry]) -> Self {
        let plugins = entries
            .iter()
            .map(|entry| (entry.registration.name, entry.middleware.clone()))
            .collect();
        Self::from_links(scope, plugins)
    }

    fn from_links(scope: Arc<str>, plugins: Vec<(&'static str, Arc<dyn DynMiddleware>)>) -> Self {
        let links: Vec<Link> = plugins
            .into_iter()
            .map(|(name, plugin)| Link {
                name,
                bodies: plugin.bodies(),
                plugin,
                warned: AtomicBool::new(false),
            })
            .collect();
        let bodies = links
            .iter()
            .fold(Bodies::NONE, |all, link| all.union(link.bodies));
        Self {
            links: links.into(),
            bodies,
            scope,
        }
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.links.iter().map(|link| link.name).collect()
    }

    /// Where the chain runs: `service` for one built with [`Pipeline::new`], or the endpoint
    /// (`GET /v1/users/{id}`) or backend (`GET /v1/users/{id} backend 0`) it belongs to.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Whether the chain has no plugin.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The bodies some plugin of the chain reads: what [`Pipeline::run_streaming`] buffers.
    pub fn bodies(&self) -> Bodies {
        self.bodies
    }

    /// Runs `request` through every plugin and `backend`. A plugin that answers early skips
    /// the later plugins' `on_request` and the backend; only the plugins that saw the request
    /// see the response. A plugin error becomes an error response, and so does a plugin that
    /// panics (it is not called again for that request); the host and other requests go on.
    ///
    /// Each plugin sees the bodies it declared ([`redplug::Bodies`]) and empty ones otherwise.
    /// When plugins change the length of a body, its `Content-Length` is set to the new length
    /// (and any `Transfer-Encoding` dropped), so that the backend and the client read exactly
    /// the body they are given.
    pub async fn run<F, Fut>(&self, mut request: Request, backend: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let sent = request.body().len();
        let (entered, early) = self.enter(&mut request).await;
        let mut response = match early {
            Some(response) => response,
            None => {
                reframe(sent, request.body().len(), request.headers_mut());
                backend(request).await
            }
        };
        let received = response.body().len();
        self.leave(entered, &mut response).await;
        reframe(received, response.body().len(), response.headers_mut());
        response
    }

    /// Like [`Pipeline::run`], for bodies that arrive as a stream (a server's request body, a
    /// client's response body). A body streams from end to end unless a plugin of the chain
    /// declared that it reads it; then it is buffered first, within `limits`: a request body
    /// that is too large is answered with 413 and one too slow with 408, a backend response
    /// too large with 502 and too slow with 504, each with a log line, without calling the
    /// plugins.
    pub async fn run_streaming<B, F, Fut>(
        &self,
        request: http::Request<B>,
        limits: BodyLimits,
        backend: F,
    ) -> http::Response<B>
    where
        B: Body<Data = Bytes> + From<Bytes> + Send,
        B::Error: Into<BoxError>,
        F: FnOnce(http::Request<B>) -> Fut,
        Fut: Future<Output = http::Response<B>>,
    {
        let (parts, body) = request.into_parts();
        let (mut request, mut streaming_request) = if self.bodies.request {
            match buffer(&parts.headers, body, limits).await {
                Ok(bytes) => (Request::from_parts(parts, bytes), None),
                Err(refused) => {
                    let status = refused.request_status();
                    tracing::debug!(
                        scope = %self.scope,
                        %status,
                        why = %refused,
                        "request body refused before the plugins"
                    );
                    return plain(status).map(B::from);
                }
            }
        } else {
            (Request::from_parts(parts, Bytes::new()), Some(body))
        };

        let sent = request.body().len();
        let (entered, early) = self.enter(&mut request).await;
        let mut streaming_response = None;
        let mut response = match early {
            Some(response) => response,
            None => {
                let (mut parts, bytes) = request.into_parts();
                let body = match streaming_request.take() {
                    Some(stream) => stream,
                    None => {
                        reframe(sent, bytes.len(), &mut parts.headers);
                        B::from(bytes)
                    }
                };
                let answer = backend(http::Request::from_parts(parts, body)).await;
                let (parts, body) = answer.into_parts();
                if self.bodies.response {
                    match buffer(&parts.headers, body, limits).await {
                        Ok(bytes) => Response::from_parts(parts, bytes),
                        Err(refused) => {
                            let status = refused.response_status();
                            tracing::warn!(
                                scope = %self.scope,
                                %status,
                                why = %refused,
                                "backend response body refused before the plugins"
                            );
                            plain(status)
                        }
                    }
                } else {
                    streaming_response = Some(body);
                    Response::from_parts(parts, Bytes::new())
                }
            }
        };
        let received = response.body().len();
        let replaced = self.leave(entered, &mut response).await;
        let (mut parts, bytes) = response.into_parts();
        match streaming_response {
            // Headers-only plugins cannot touch a streamed body, so it goes on unless a plugin
            // failed and its error response took the place of the whole response.
            Some(stream) if !replaced => http::Response::from_parts(parts, stream),
            _ => {
                reframe(received, bytes.len(), &mut parts.headers);
                http::Response::from_parts(parts, B::from(bytes))
            }
        }
    }

    /// Runs `on_request` of each plugin in order until one answers. Returns how many plugins
    /// saw the request (those whose `on_response` runs) and the early answer, if any.
    async fn enter(&self, request: &mut Request) -> (usize, Option<Response>) {
        let mut entered = 0;
        for link in self.links.iter() {
            entered += 1;
            let hidden = (!link.bodies.request).then(|| std::mem::take(request.body_mut()));
            let hook = AssertUnwindSafe(link.plugin.on_request(request)).catch_unwind();
            let outcome = hook.await;
            if let Some(body) = hidden {
                let put = std::mem::replace(request.body_mut(), body);
                link.dropped(&put, &self.scope, "on_request");
            }
            match outcome {
                Ok(Ok(Flow::Continue)) => {}
                Ok(Ok(Flow::Respond(response))) => return (entered, Some(response)),
                Ok(Err(error)) => {
                    let response = error_response(link.name, &self.scope, "on_request", &error);
                    return (entered, Some(response));
                }
                Err(panic) => {
                    let response = panic_response(link.name, &self.scope, "on_request", &*panic);
                    return (entered - 1, Some(response));
                }
            }
        }
        (entered, None)
    }

    /// Runs `on_response` of the first `entered` plugins in reverse order. Returns whether a
    /// plugin's failure replaced the response with an error response.
    async fn leave(&self, entered: usize, response: &mut Response) -> bool {
        let mut replaced = false;
        for link in self.links[..entered].iter().rev() {
            let hidden = (!link.bodies.response).then(|| std::mem::take(response.body_mut()));
            let hook = AssertUnwindSafe(link.plugin.on_response(response)).catch_unwind();
            let outcome = hook.await;
            if let Some(body) = hidden {
                let put = std::mem::replace(response.body_mut(), body);
                link.dropped(&put, &self.scope, "on_response");
            }
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    *response = error_response(link.name, &self.scope, "on_response", &error);
                    replaced = true;
                }
                Err(panic) => {
                    *response = panic_response(link.name, &self.scope, "on_response", &*panic);
                    replaced = true;
                }
            }
        }
        replaced
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("scope", &self.scope)
            .field("plugins", &self.names())
            .field("bodies", &self.bodies)
            .finish()
    }
}

impl Link {
    /// Warns (once) that the plugin put a body where it declared none, which is dropped.
    fn dropped(&self, put: &Bytes, scope: &str, hook: &str) {
        if put.is_empty() || self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            plugin = self.name,
            scope,
            hook,
            "the plugin set a body without declaring it in `Middleware::BODIES`; the body is \
             dropped and the original one sent (logged once per plugin and chain)"
        );
    }
}

/// Why a body was not buffered.
#[derive(Debug)]
enum Refused {
    TooLarge { limit: usize },
    TooSlow { after: Duration },
    Broken(String),
}

impl Refused {
    fn request_status(&self) -> StatusCode {
        match self {
            Refused::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Refused::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn response_status(&self) -> StatusCode {
        match self {
            Refused::TooSlow { .. } => StatusCode::GATEWAY_TIMEOUT,
            Refused::TooLarge { .. } | Refused::Broken(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TooLarge { limit } => {
                write!(
                    f,
                    "the body is larger than the {limit} bytes a plugin may read"
                )
            }
            Refused::TooSlow { after } => write!(f, "the body did not arrive within {after:?}"),
            Refused::Broken(why) => write!(f, "the body could not be read: {why}"),
        }
    }
}

/// The whole of `body`, refused as soon as it exceeds the limit (a `Content-Length` that says
/// so is refused before reading) or the read timeout.
async fn buffer<B>(headers: &HeaderMap, body: B, limits: BodyLimits) -> Result<Bytes, Refused>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let too_large = Refused::TooLarge {
        limit: limits.max_bytes,
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let read = Limited::new(body, limits.max_bytes).collect();
    match tokio::time::timeout(limits.read_timeout, read).await {
        Err(_) => Err(Refused::TooSlow {
            after: limits.read_timeout,
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large),
        // A body that stalls (the gateway's streamed bodies fail with a timeout) is slow, not
        // broken.
        Ok(Err(error))
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) =>
        {
            Err(Refused::TooSlow {
                after: limits.read_timeout,
            })
        }
        Ok(Err(error)) => Err(Refused::Broken(error.to_string())),
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

/// A response with `status` and its reason phrase as a one-line text body.
pub(crate) fn plain(status: StatusCode) -> Response {
    let body = format!("{}\n", status.canonical_reason().unwrap_or("plugin error"));
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
