//! [`PluginKit`]: one plugin built the way a gateway builds it, to drive its hooks in a test.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use redplug::{Plugin, RedisCluster as ClusterHandle, RedisPool, Request, Response};
use redplug_runtime::{Pipeline, Runtime, StartupError};
use serde_json::{Map, Value, json};

use crate::cluster::RedisCluster;
use crate::server::RedisServer;

/// The path of the one endpoint a kit lists its plugin at (see [`PluginKitBuilder::at_endpoint`]).
pub const KIT_ENDPOINT: &str = "/plugin-kit";

/// Where the plugin instance of a [`PluginKit`] runs, as a gateway config places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Listed nowhere: one instance at the service level, with the plugin's config
    /// `extra_config["plugin/redplug"]["<name>"]`.
    Service,
    /// Listed in an endpoint's `extra_config["plugin/redplug"]`: around the whole endpoint.
    Endpoint,
    /// Listed in a backend's `extra_config["plugin/redplug"]`: around that backend's call.
    Backend,
}

/// Options for a [`PluginKit`]: the connections the plugin's fields name, its config, and
/// where it runs. Start it with [`start`](Self::start).
#[must_use = "a builder does nothing until `.start().await`"]
pub struct PluginKitBuilder<P> {
    pools: Vec<Value>,
    clusters: Vec<Value>,
    config: Option<Value>,
    settings: Option<Value>,
    place: Place,
    plugin: PhantomData<fn() -> P>,
}

impl<P: Plugin> PluginKitBuilder<P> {
    /// A pool called `name` on `server` (with its password, if it has one): the name a
    /// `#[redis_pool("name")]` field of the plugin asks for.
    pub fn pool(self, name: &str, server: &RedisServer) -> Self {
        self.pool_with(name, server, json!({}))
    }

    /// Like [`pool`](Self::pool), with more keys of the pool's config entry, as a gateway config
    /// writes them: `json!({"db": 8, "pool_size": 2, "max_retries": -1})`.
    pub fn pool_with(self, name: &str, server: &RedisServer, options: Value) -> Self {
        let mut entry = json!({ "address": server.addr() });
        if let Some(password) = server.password() {
            entry["password"] = json!(password);
        }
        merge(&mut entry, options);
        self.pool_entry(name, entry)
    }

    /// A pool called `name` on a server this test did not start, such as a shared one in CI:
    /// `"127.0.0.1:6379"`. Pass more keys (`db`, `password`, `tls`) in `options`, or `json!({})`.
    pub fn pool_at(self, name: &str, address: &str, options: Value) -> Self {
        let mut entry = json!({ "address": address });
        merge(&mut entry, options);
        self.pool_entry(name, entry)
    }

    fn pool_entry(mut self, name: &str, mut entry: Value) -> Self {
        entry["name"] = json!(name);
        self.pools.push(entry);
        self
    }

    /// A cluster called `name` seeded with every node of `cluster`: the name a
    /// `#[redis_cluster("name")]` field asks for.
    pub fn cluster(self, name: &str, cluster: &RedisCluster) -> Self {
        self.cluster_with(name, cluster, json!({}))
    }

    /// Like [`cluster`](Self::cluster), with more keys of the cluster's config entry.
    pub fn cluster_with(mut self, name: &str, cluster: &RedisCluster, options: Value) -> Self {
        let mut entry = json!({ "name": name, "addresses": cluster.addrs() });
        if let Some(password) = cluster.nodes().first().and_then(RedisServer::password) {
            entry["password"] = json!(password);
        }
        merge(&mut entry, options);
        self.clusters.push(entry);
        self
    }

    /// A cluster called `name` seeded with nodes this test did not start:
    /// `&["10.0.0.1:7000", "10.0.0.2:7000"]`, with more keys in `options` or `json!({})`.
    pub fn cluster_at(mut self, name: &str, addresses: &[&str], options: Value) -> Self {
        let mut entry = json!({ "name": name, "addresses": addresses });
        merge(&mut entry, options);
        self.clusters.push(entry);
        self
    }

    /// The plugin's service-level config, `extra_config["plugin/redplug"]["<name>"]`: what the
    /// plugin gets at the service level, and what an endpoint or backend without settings of
    /// its own falls back to.
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// Runs the plugin at an endpoint, as one listed in
    /// `endpoints[0].extra_config["plugin/redplug"].name`. Give that place's own settings with
    /// [`settings`](Self::settings).
    pub fn at_endpoint(mut self) -> Self {
        self.place = Place::Endpoint;
        self
    }

    /// Runs the plugin around a backend, as one listed in
    /// `endpoints[0].backend[0].extra_config["plugin/redplug"].name`.
    pub fn at_backend(mut self) -> Self {
        self.place = Place::Backend;
        self
    }

    /// The settings of the place the plugin runs at: at an endpoint or backend its own
    /// settings next to the `name` list; at the service level the same as
    /// [`config`](Self::config).
    pub fn settings(mut self, settings: Value) -> Self {
        self.settings = Some(settings);
        self
    }

    /// The gateway config this builder describes, as JSON text: what [`start`](Self::start)
    /// starts the runtime with.
    pub fn config_json(&self) -> String {
        let name = P::NAME;
        let mut plugins = Map::new();
        let service = match self.place {
            Place::Service => self.settings.clone().or_else(|| self.config.clone()),
            Place::Endpoint | Place::Backend => self.config.clone(),
        };
        if let Some(service) = service {
            plugins.insert(name.to_owned(), service);
        }
        let mut listing = json!({ "name": [name] });
        if let (Some(settings), Place::Endpoint | Place::Backend) = (&self.settings, self.place) {
            listing[name] = settings.clone();
        }
        let mut backend = json!({
            // Nothing is called: the kit answers for the backend.
            "host": ["http://127.0.0.1:9"],
            "url_pattern": "/",
            "encoding": "no-op"
        });
        let mut endpoint = json!({
            "endpoint": KIT_ENDPOINT,
            "output_encoding": "no-op",
        });
        match self.place {
            Place::Service => {}
            Place::Endpoint => endpoint["extra_config"] = json!({ "plugin/redplug": listing }),
            Place::Backend => backend["extra_config"] = json!({ "plugin/redplug": listing }),
        }
        endpoint["backend"] = json!([backend]);
        let mut config = json!({
            "version": 3,
            "extra_config": {
                "redis": { "connection_pools": self.pools, "clusters": self.clusters },
                "plugin/redplug": plugins,
            },
        });
        if self.place != Place::Service {
            config["endpoints"] = json!([endpoint]);
        }
        config.to_string()
    }

    /// Starts a redplug runtime that builds this one plugin from the config: its fields
    /// injected, its config read and checked, its scripts loaded, its `init` run. The error is
    /// the one a gateway would stop with (an unknown pool name, a bad config value with its
    /// path, a script that does not compile, a failing `init`).
    pub async fn start(self) -> Result<PluginKit<P>, StartupError> {
        let runtime = Runtime::builder()
            .only_plugins([P::NAME])
            .start_json(&self.config_json())
            .await?;
        let chain = match self.place {
            Place::Service => Pipeline::new(&runtime, [P::NAME]).ok(),
            Place::Endpoint => runtime.endpoints().first().map(|e| e.chain().clone()),
            Place::Backend => runtime
                .endpoints()
                .first()
                .and_then(|e| e.backends().first())
                .map(|b| b.chain().clone()),
        };
        let Some(chain) = chain else {
            runtime.shutdown().await;
            panic!(
                "redplug-testkit: the runtime started without the chain of plugin `{}` at {:?}; \
                 this is a bug in the kit",
                P::NAME,
                self.place
            );
        };
        Ok(PluginKit {
            runtime,
            chain,
            place: self.place,
            plugin: PhantomData,
        })
    }
}

impl<P> fmt::Debug for PluginKitBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pool entries may carry passwords.
        f.debug_struct("PluginKitBuilder")
            .field("pools", &self.pools.len())
            .field("clusters", &self.clusters.len())
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// One plugin, built by the redplug runtime from a gateway config exactly as a gateway builds
/// it, with hooks to drive from a test. Every request goes through the same chain a gateway
/// runs ([`Pipeline`]): bodies the plugin did not declare are hidden from it, an error it
/// returns becomes an error response, a panic becomes a 500.
///
/// ```no_run
/// # use redplug::prelude::*;
/// # #[derive(Plugin)]
/// # #[plugin(name = "rate_limit")]
/// # struct RateLimit { #[redis_pool("ratelimit_counters")] redis: RedisPool }
/// # impl Middleware for RateLimit {}
/// use redplug_testkit::{PluginKit, RedisServer};
/// use serde_json::json;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = RedisServer::start();
/// let kit = PluginKit::<RateLimit>::builder()
///     .pool("ratelimit_counters", &server)
///     .at_endpoint()
///     .settings(json!({ "limit": 1, "window": "1m" }))
///     .start()
///     .await?;
/// let request = || http::Request::get("/").header("x-client-id", "alice").body(bytes::Bytes::new());
/// assert!(kit.request(request()?).await.reached_backend());
/// assert_eq!(kit.request(request()?).await.status(), http::StatusCode::TOO_MANY_REQUESTS);
/// kit.shutdown().await;
/// # Ok(()) }
/// ```
pub struct PluginKit<P> {
    runtime: Runtime,
    chain: Pipeline,
    place: Place,
    plugin: PhantomData<fn() -> P>,
}

impl<P: Plugin> PluginKit<P> {
    /// Options: connections, config, place.
    pub fn builder() -> PluginKitBuilder<P> {
        PluginKitBuilder {
            pools: Vec::new(),
            clusters: Vec::new(),
            config: None,
            settings: None,
            place: Place::Service,
            plugin: PhantomData,
        }
    }

    /// The plugin itself, to call its hooks directly (`Middleware::on_request(&*plugin, ..)`)
    /// or read its fields. Only a plugin at the service level is reachable by type; at an
    /// endpoint or backend this is `None` (drive it with [`request`](Self::request)).
    pub fn plugin(&self) -> Option<Arc<P>> {
        self.runtime.get::<P>()
    }

    /// Where the plugin runs.
    pub fn place(&self) -> Place {
        self.place
    }

    /// The chain the plugin runs in: one plugin, at its place.
    pub fn chain(&self) -> &Pipeline {
        &self.chain
    }

    /// The runtime that built the plugin.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The pool called `name`, as the plugin's fields got it.
    pub fn pool(&self, name: &str) -> Option<RedisPool> {
        self.runtime.selectors().pool(name)
    }

    /// The cluster called `name`, as the plugin's fields got it.
    pub fn cluster(&self, name: &str) -> Option<ClusterHandle> {
        self.runtime.selectors().cluster(name)
    }

    /// Sends `request` through the plugin to a backend that answers `200 OK` with the body
    /// `ok`: `on_request`, then (unless the plugin answered) the backend, then `on_response`.
    /// The [`Exchange`] has the response the client would get and the request as the backend
    /// received it.
    pub async fn request(&self, request: Request) -> Exchange {
        self.exchange(request, |_| async {
            Response::new(Bytes::from_static(b"ok"))
        })
        .await
    }

    /// Like [`request`](Self::request), with a backend of the test's own: answer with a status,
    /// headers or body the plugin's `on_response` must handle.
    pub async fn exchange<F, Fut>(&self, request: Request, backend: F) -> Exchange
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let forwarded = Arc::new(Mutex::new(None));
        let seen = forwarded.clone();
        let response = self
            .chain
            .run(request, move |request| {
                let copy = copy_request(&request);
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(copy);
                backend(request)
            })
            .await;
        let forwarded = forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Exchange {
            response,
            forwarded,
        }
    }

    /// Runs `response` through the plugin's `on_response`, as the answer of a backend to a
    /// `GET /` (the plugin's `on_request` sees that request first).
    pub async fn response(&self, response: Response) -> Response {
        let request = Request::new(Bytes::new());
        self.exchange(request, |_| async { response })
            .await
            .response
    }

    /// Runs the plugin's `shutdown` hook and closes every connection, as a gateway does when it
    /// stops. Dropping the kit without it closes the connections without the hook.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
    }
}

impl<P: Plugin> fmt::Debug for PluginKit<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginKit")
            .field("plugin", &P::NAME)
            .field("place", &self.place)
            .field("scope", &self.chain.scope())
            .finish_non_exhaustive()
    }
}

/// What one request through a [`PluginKit`] produced.
#[derive(Debug)]
pub struct Exchange {
    /// The response the client gets.
    pub response: Response,
    /// The request as the backend received it (with what the plugin changed), or `None` when
    /// the plugin answered early or failed before the backend.
    pub forwarded: Option<Request>,
}

impl Exchange {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// A response header as text; `None` when it is absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name)?.to_str().ok()
    }

    /// Whether the request got past the plugin to the backend.
    pub fn reached_backend(&self) -> bool {
        self.forwarded.is_some()
    }
}

/// A copy of what the backend received: method, URI, version, headers, body.
fn copy_request(request: &Request) -> Request {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Adds the keys of `extra` to the object `target`.
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}
