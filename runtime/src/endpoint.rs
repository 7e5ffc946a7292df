//! [`Endpoint`] and [`Backend`]: the endpoints the config lists, with the plugin chain built for
//! each place, as a host mounts them.

use std::time::Duration;

use http::Method;

use crate::config::{BackendConfig, EndpointConfig};
use crate::pipeline::Pipeline;
use crate::registry::{PluginEntry, Scope};

/// One entry of the config's `endpoints[]`: the route a host serves, the backends it calls and
/// the plugins wrapping it. Built once at startup; cheap to clone.
///
/// A host mounts [`method`](Self::method) and [`path`](Self::path), runs each request through
/// [`chain`](Self::chain), and inside it calls every backend through that backend's own
/// [`chain`](Backend::chain):
///
/// ```
/// # use redplug_runtime::Runtime;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = Runtime::builder()
///     .registrations([])
///     .start_json(
///         r#"{"endpoints": [{"endpoint": "/v1/users/{id}", "backend": [
///             {"host": ["http://users.internal:8080"], "url_pattern": "/users/{id}"}
///         ]}]}"#,
///     )
///     .await?;
/// let endpoint = &runtime.endpoints()[0];
/// assert_eq!(endpoint.method(), http::Method::GET);
/// assert_eq!(endpoint.path(), "/v1/users/{id}");
/// assert_eq!(endpoint.backends()[0].url_pattern(), "/users/{id}");
/// assert!(endpoint.chain().is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Endpoint {
    method: Method,
    path: String,
    timeout: Option<Duration>,
    output_encoding: Option<String>,
    backends: Vec<Backend>,
    chain: Pipeline,
    at: String,
}

impl Endpoint {
    /// `endpoint` with the chains built for it and its backends, in order.
    pub(crate) fn new(
        config: &EndpointConfig,
        chain: &[PluginEntry],
        backend_chains: &[Vec<PluginEntry>],
    ) -> Self {
        let backends = config
            .backends
            .iter()
            .zip(backend_chains)
            .enumerate()
            .map(|(index, (backend, chain))| {
                let scope = Scope::backend(config, index);
                Backend::new(backend, &config.method, Pipeline::of(scope.into(), chain))
            })
            .collect();
        Self {
            method: config.method.clone(),
            path: config.endpoint.clone(),
            timeout: config.timeout,
            output_encoding: config.output_encoding.clone(),
            backends,
            chain: Pipeline::of(Scope::endpoint(config).into(), chain),
            at: config.path.clone(),
        }
    }

    /// The HTTP method it answers (`GET` unless the config says otherwise).
    pub fn method(&self) -> Method {
        self.method.clone()
    }

    /// The path pattern it serves, with `{param}` placeholders: `/v1/users/{id}`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its `timeout`, when it sets one; a host applies its own default otherwise.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Its `output_encoding` (`json`, `no-op`, ...), when it sets one.
    pub fn output_encoding(&self) -> Option<&str> {
        self.output_encoding.as_deref()
    }

    /// Its backends, in the order the config lists them.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The plugins wrapping the whole endpoint, in the order its `name` list gives: their
    /// `on_request` runs before any backend is called, their `on_response` on the response
    /// the client gets. Empty when the endpoint lists no plugin.
    pub fn chain(&self) -> &Pipeline {
        &self.chain
    }

    /// Where the endpoint is in the config file, such as `endpoints[3]`.
    pub fn config_path(&self) -> &str {
        &self.at
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("backends", &self.backends)
            .field("chain", &self.chain.names())
            .finish_non_exhaustive()
    }
}

/// One backend of an [`Endpoint`]: where the call goes and the plugins wrapping it.
#[derive(Clone)]
pub struct Backend {
    hosts: Vec<String>,
    url_pattern: String,
    method: Method,
    encoding: Option<String>,
    chain: Pipeline,
    at: String,
}

impl Backend {
    fn new(config: &BackendConfig, endpoint_method: &Method, chain: Pipeline) -> Self {
        Self {
            hosts: config.hosts.clone(),
            url_pattern: config.url_pattern.clone(),
            method: config
                .method
                .clone()
                .unwrap_or_else(|| endpoint_method.clone()),
            encoding: config.encoding.clone(),
            chain,
            at: config.path.clone(),
        }
    }

    /// The base URLs to call, in turn (`http://users.internal:8080`): the backend's `host`, or
    /// the top-level `host` when it has none.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The path to call on the host, with the endpoint's `{param}` placeholders.
    pub fn url_pattern(&self) -> &str {
        &self.url_pattern
    }

    /// The HTTP method of the call: the backend's `method`, else the endpoint's.
    pub fn method(&self) -> Method {
        self.method.clone()
    }

    /// Its `encoding` (`json`, `no-op`, ...), when it sets one.
    pub fn encoding(&self) -> Option<&str> {
        self.encoding.as_deref()
    }

    /// The plugins wrapping this backend's call: their hooks see the request to this backend
    /// and its response. Empty when the backend lists no plugin.
    pub fn chain(&self) -> &Pipeline {
        &self.chain
    }

    /// Where the backend is in the config file, such as `endpoints[3].backend[0]`.
    pub fn config_path(&self) -> &str {
        &self.at
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("hosts", &self.hosts)
            .field("url_pattern", &self.url_pattern)
            .field("method", &self.method)
            .field("chain", &self.chain.names())
            .finish_non_exhaustive()
    }
}
