//! [`Gateway`]: the config's `endpoints[]` served over HTTP/1.1 with their plugin chains, as
//! `redplug serve` runs them.
//!
//! Each endpoint proxies to its one backend with KrakenD's `no-op` encoding: the backend's
//! status, headers and body go back to the client as they came. A request runs through the
//! endpoint's chain, and the backend call inside it through the backend's chain. Bodies stream
//! unless a plugin declares that it reads them ([`redplug::Bodies`]), and then are bounded by
//! the body limit; everything a request holds is bounded by the endpoint's `timeout`.

mod body;
mod proxy;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Config, ConfigError, ConfigErrors, GatewayConfig};
use crate::pipeline::BodyLimits;
use crate::reload::ReloadReport;
use crate::{Backend, Endpoint, Runtime};
use body::Body;
use proxy::{Allowed, Hosts, HttpClient};
use routes::{Found, Routes, UrlPattern};

/// The config's endpoints as an HTTP/1.1 server. Build it with [`Gateway::new`] (which refuses
/// what it cannot serve, every problem at once), then [`bind`](Gateway::bind) and
/// [`serve`](Gateway::serve).
pub struct Gateway {
    shared: Arc<Shared>,
    settings: GatewayConfig,
}

struct Shared {
    /// The routes of the config the runtime runs; a reload replaces them.
    routes: ArcSwap<Routes<Target>>,
    client: HttpClient,
    runtime: Runtime,
}

/// Reloads a serving [`Gateway`]'s config (see [`Gateway::reloader`]). Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
    settings: GatewayConfig,
}

/// One endpoint, ready to answer.
struct Route {
    endpoint: Endpoint,
    backend: Backend,
    hosts: Hosts,
    url: UrlPattern,
    headers: Allowed,
    query: Allowed,
    timeout: Duration,
    limits: BodyLimits,
}

/// What to do for a path.
enum Target {
    Health,
    Ready,
    Debug,
    Endpoint(Box<Route>),
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// Endpoints the gateway cannot serve as configured, each with its JSON path.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The HTTP client for backend calls could not be set up.
    #[error("cannot set up the HTTP client for backend calls: {0}")]
    Client(String),
    /// A reload was refused: the runtime's config did not change.
    #[error("the config was not reloaded: {0}")]
    Reload(Box<crate::StartupError>),
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `listen_ip:port`.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

impl Gateway {
    /// The gateway for `runtime`'s endpoints. Refuses, all at once and each at its JSON path,
    /// what it does not serve: an endpoint without exactly one backend (aggregation), an
    /// encoding other than `no-op`, a backend host that is not an `http`/`https` base URL, a
    /// `url_pattern` placeholder the endpoint does not define, and paths the router cannot
    /// tell apart.
    pub fn new(runtime: &Runtime) -> Result<Self, GatewayError> {
        let config = runtime.config();
        let routes = table(&config, &runtime.endpoints())?;
        let client = proxy::client().map_err(GatewayError::Client)?;
        Ok(Self {
            shared: Arc::new(Shared {
                routes: ArcSwap::from_pointee(routes),
                client,
                runtime: runtime.clone(),
            }),
            settings: config.gateway.clone(),
        })
    }

    /// A handle that reloads the gateway's config while it serves (what `redplug serve` does
    /// on SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
            settings: self.settings.clone(),
        }
    }

    /// Opens the listening socket at the config's `listen_ip` (all interfaces by default) and
    /// `port` (8080 by default; 0 picks a free one: see the listener's `local_addr`).
    pub async fn bind(&self) -> Result<TcpListener, GatewayError> {
        let address = SocketAddr::new(self.settings.listen_ip, self.settings.port);
        TcpListener::bind(address)
            .await
            .map_err(|source| GatewayError::Bind { address, source })
    }

    /// Serves connections from `listener` until `shutdown` completes; then stops accepting,
    /// lets requests in flight finish for at most `grace`, and returns. The runtime (its
    /// plugins and connections) is the caller's to shut down afterwards.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> io::Result<()> {
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(max_connections()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.settings.read_header_timeout)
            .max_buf_size(self.settings.max_header_bytes.max(8192));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, mostly: wait for some to close.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "connection refused: the gateway holds as many as it may");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(shared.answer(request, peer).await) }
            });
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!(grace = ?grace, "no longer accepting; waiting for requests in flight");
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("every request in flight finished"),
            Err(_) => tracing::warn!(
                grace = ?grace,
                "requests still in flight after the grace period were cut off"
            ),
        }
        Ok(())
    }
}

impl Reloader {
    /// Reloads the config at `path`: checks that the gateway can serve it, reloads the runtime
    /// ([`Runtime::reload`]), then routes requests by the new endpoints. Any problem leaves
    /// everything as it was. The listening address cannot change without a restart: a new
    /// `port` or `listen_ip` is reported in the log and not applied.
    pub async fn reload_file(&self, path: &std::path::Path) -> Result<ReloadReport, GatewayError> {
        let config = crate::config::load(path)?;
        // Checked with the endpoints' routes alone first: the runtime's reload is what builds
        // their plugins, and it must not happen for a config the gateway cannot serve.
        let placeholders: Vec<Endpoint> = config
            .endpoints
            .iter()
            .map(|endpoint| {
                Endpoint::new(endpoint, &[], &vec![Vec::new(); endpoint.backends.len()])
            })
            .collect();
        table(&config, &placeholders)?;
        let listening = (config.gateway.listen_ip, config.gateway.port);
        if listening != (self.settings.listen_ip, self.settings.port) {
            tracing::warn!(
                "the reloaded config listens elsewhere; the gateway keeps listening where it \
                 started (restart it to move)"
            );
        }
        let runtime = &self.shared.runtime;
        let report = runtime
            .reload(config)
            .await
            .map_err(|error| GatewayError::Reload(Box::new(error)))?;
        match table(&runtime.config(), &runtime.endpoints()) {
            Ok(routes) => self.shared.routes.store(Arc::new(routes)),
            // Checked above, so this does not happen; if it did, the old routes keep serving.
            Err(error) => tracing::error!(%error, "the reloaded endpoints could not be routed"),
        }
        Ok(report)
    }
}

/// The route table for `config`'s `endpoints`: the gateway's own paths, then every endpoint.
/// Refuses, all at once and each at its JSON path, what the gateway does not serve.
fn table(config: &Config, endpoints: &[Endpoint]) -> Result<Routes<Target>, ConfigErrors> {
    let settings = &config.gateway;
    let mut problems = Vec::new();
    let mut routes: Routes<Target> = Routes::new();
    // The gateway's own paths go in first, so that an endpoint that takes one of them is the
    // one reported. (Adding them to the empty table cannot fail.)
    let _ = routes.add(Method::GET, "/__health", Target::Health);
    let _ = routes.add(Method::GET, "/__ready", Target::Ready);
    if settings.debug_endpoint {
        for method in DEBUG_METHODS {
            for path in ["/__debug/", "/__debug/{*rest}"] {
                let _ = routes.add(method.clone(), path, Target::Debug);
            }
        }
    }
    for (endpoint, endpoint_config) in endpoints.iter().zip(&config.endpoints) {
        let at = endpoint.config_path();
        let Some(route) = route(endpoint, endpoint_config, settings, &mut problems) else {
            continue;
        };
        let target = Target::Endpoint(Box::new(route));
        if let Err(message) = routes.add(endpoint.method(), endpoint.path(), target) {
            problems.push(ConfigError {
                path: format!("{at}.endpoint"),
                message,
                value: Some(format!("\"{}\"", endpoint.path())),
            });
        }
    }
    match ConfigErrors::new(problems, None) {
        Some(errors) => Err(errors),
        None => Ok(routes),
    }
}

/// The methods `/__debug/` answers.
const DEBUG_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// How many client connections the gateway holds at once: 10,000, or fewer when the process
/// may open fewer files (half of `ulimit -n`, leaving the rest for backends and Redis).
fn max_connections() -> usize {
    let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(files / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 10_000)
}

/// The route of one endpoint, or its problems.
fn route(
    endpoint: &Endpoint,
    config: &crate::config::EndpointConfig,
    settings: &GatewayConfig,
    problems: &mut Vec<ConfigError>,
) -> Option<Route> {
    let at = endpoint.config_path();
    let before = problems.len();
    let mut problem = |path: String, message: String| {
        problems.push(ConfigError {
            path,
            message,
            value: None,
        });
    };
    if endpoint.output_encoding() != Some("no-op") {
        problem(
            format!("{at}.output_encoding"),
            format!(
                "is {}; redplug serve passes responses through as they come (KrakenD's no-op), \
                 and does not transform them: set \"output_encoding\": \"no-op\"",
                shown_or_default(
                    endpoint.output_encoding(),
                    "not set (KrakenD's default, json)"
                )
            ),
        );
    }
    let [backend] = endpoint.backends() else {
        problem(
            format!("{at}.backend"),
            format!(
                "lists {} backends; redplug serve proxies each endpoint to exactly one \
                 (KrakenD's aggregation of several is not supported): give it one backend",
                endpoint.backends().len()
            ),
        );
        return None;
    };
    let backend_at = backend.config_path();
    if backend.encoding() != Some("no-op") {
        problem(
            format!("{backend_at}.encoding"),
            format!(
                "is {}; redplug serve passes responses through as they come: set \
                 \"encoding\": \"no-op\"",
                shown_or_default(backend.encoding(), "not set (KrakenD's default, json)")
            ),
        );
    }
    let hosts = match Hosts::new(backend.hosts()) {
        Ok(hosts) => Some(hosts),
        Err((index, message)) => {
            problem(format!("{backend_at}.host[{index}]"), message);
            None
        }
    };
    let params = routes::params_of(endpoint.path());
    let url = match UrlPattern::parse(backend.url_pattern(), &params) {
        Ok(url) => Some(url),
        Err(message) => {
            problem(format!("{backend_at}.url_pattern"), message);
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    let timeout = endpoint.timeout().unwrap_or(settings.timeout);
    Some(Route {
        endpoint: endpoint.clone(),
        backend: backend.clone(),
        hosts: hosts?,
        url: url?,
        headers: Allowed::from_list(&config.input_headers),
        query: Allowed::from_list(&config.input_query_strings),
        timeout,
        limits: BodyLimits {
            max_bytes: config.max_body_bytes.unwrap_or(settings.max_body_bytes),
            read_timeout: timeout,
        },
    })
}

fn shown_or_default(value: Option<&str>, default: &str) -> String {
    match value {
        Some(value) => format!("\"{}\"", crate::config::text::shown(value)),
        None => default.to_owned(),
    }
}

impl Shared {
    /// `/__ready`: every pool and cluster with its health; 200 when every one that a plugin
    /// requires answers, 503 otherwise.
    async fn ready(&self) -> http::Response<Body> {
        let health = self.runtime.health().await;
        let status = if health.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        match serde_json::to_string(&*health) {
            Ok(body) => json(status, body),
            Err(_) => proxy::status(status),
        }
    }

    /// The response to one client request.
    async fn answer(
        &self,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Body> {
        let path = request.uri().path().to_owned();
        let routes = self.routes.load_full();
        let (target, params) = match routes.find(request.method(), &path) {
            Found::Route(target, params) => (target, params),
            Found::Nothing => return proxy::status(StatusCode::NOT_FOUND),
        };
        match target {
            Target::Health => health(),
            Target::Ready => self.ready().await,
            Target::Debug => debug(request).await,
            Target::Endpoint(route) => self.endpoint(route, request, &params, peer).await,
        }
    }

    /// A request through the endpoint's chain, the backend's chain and the backend, all
    /// within the endpoint's timeout (504 past it). As in KrakenD, only the headers and query
    /// parameters the endpoint lets through go on: the endpoint's plugins see the request
    /// after that filter, and what they add reaches the backend.
    async fn endpoint(
        &self,
        route: &Route,
        request: http::Request<Incoming>,
        params: &[(String, String)],
        peer: SocketAddr,
    ) -> http::Response<Body> {
        let (mut parts, body) = request.into_parts();
        parts.headers = proxy::allowed_headers(&parts.headers, &route.headers, peer);
        let query = proxy::backend_query(parts.uri.query(), &route.query);
        let path = parts.uri.path();
        let uri = match &query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        if let Ok(uri) = uri.parse() {
            parts.uri = uri;
        }
        let received = Arc::new(AtomicBool::new(false));
        let body = Body::tracked(body, route.timeout, received.clone());
        let request = http::Request::from_parts(parts, body);
        let work = route
            .endpoint
            .chain()
            .run_streaming(request, route.limits, |request| {
                self.call_backend(route, request, params)
            });
        match tokio::time::timeout(route.timeout, work).await {
            Ok(response) => response,
            // The client had not even finished sending: its own slowness, not the backend's.
            Err(_) if !received.load(Ordering::Relaxed) => {
                tracing::debug!(
                    scope = route.endpoint.chain().scope(),
                    timeout = ?route.timeout,
                    "the client did not send its whole body within the timeout; answering 408"
                );
                proxy::status(StatusCode::REQUEST_TIMEOUT)
            }
            Err(_) => {
                tracing::warn!(
                    scope = route.endpoint.chain().scope(),
                    timeout = ?route.timeout,
                    "the endpoint did not answer within its timeout; answering 504"
                );
                proxy::status(StatusCode::GATEWAY_TIMEOUT)
            }
        }
    }

    async fn call_backend(
        &self,
        route: &Route,
        request: http::Request<Body>,
        params: &[(String, String)],
    ) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        let path = route.url.render(|name| {
            params
                .iter()
                .find(|(param, _)| param == name)
                .map(|(_, value)| value.as_str())
        });
        let uri = match proxy::backend_uri(route.hosts.next(), &path, parts.uri.query()) {
            Ok(uri) => uri,
            Err(message) => {
                tracing::warn!(scope = route.backend.chain().scope(), %message, "answering 502");
                return proxy::status(StatusCode::BAD_GATEWAY);
            }
        };
        let mut call = http::Request::new(body);
        *call.method_mut() = route.backend.method();
        *call.uri_mut() = uri;
        *call.headers_mut() = parts.headers;
        let scope: Arc<str> = Arc::from(route.backend.chain().scope());
        route
            .backend
            .chain()
            .run_streaming(call, route.limits, |call| {
                proxy::call(&self.client, call, route.timeout, &scope)
            })
            .await
    }
}

/// `/__health`: the gateway is up.
fn health() -> http::Response<Body> {
    let now = httpdate::fmt_http_date(SystemTime::now());
    let body = serde_json::json!({ "status": "ok", "now": now }).to_string();
    json(StatusCode::OK, body)
}

/// `/__debug/...`: logs the request at debug level and answers `{"message":"pong"}`, as
/// KrakenD's debug endpoint does, so that a config can use the gateway as its own backend.
async fn debug(request: http::Request<Incoming>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    // Read at most 64 KiB of what it was sent, only to log its size; the rest is dropped.
    let limited = http_body_util::Limited::new(body, 64 * 1024);
    let size = http_body_util::BodyExt::collect(limited)
        .await
        .map(|collected| collected.to_bytes().len())
        .ok();
    tracing::debug!(
        method = %parts.method,
        uri = %parts.uri,
        headers = ?parts.headers,
        body_bytes = ?size,
        "debug endpoint"
    );
    json(StatusCode::OK, r#"{"message":"pong"}"#.to_owned())
}

fn json(status: StatusCode, body: String) -> http::Response<Body> {
    let mut response = http::Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
