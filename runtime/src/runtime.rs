//! [`Runtime`]: what a gateway host starts once and keeps for its lifetime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use redplug::host::{self, DynMiddleware, PoolBackend};
use redplug::{Plugin, PoolStatus, RedisSelectors, Registration};
use tokio::task::JoinHandle;

use crate::config::{self, Config, ConfigErrors};
use crate::connections::{self, ClusterEntry, PoolEntry};
use crate::endpoint::Endpoint;
use crate::error::{StartupError, UnknownPlugin, UnknownPool};
use crate::health::Health;
use crate::net::tls;
use crate::registry::{self, PluginEntry, Plugins};
use crate::reload::{Changes, ReloadReport, Retiring};
use crate::{lifecycle, names, scopes};

/// The running redplug host: every configured pool and cluster, and every registered plugin
/// built with its connections. Cheap to clone; clones share everything, and
/// [`reload`](Runtime::reload) changes it for all of them.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// The plugins this runtime builds, sorted by name.
    registrations: Vec<&'static Registration>,
    /// The lookups by name plugins were given; a reload updates them in place.
    selectors: RedisSelectors,
    /// What the current config built.
    state: ArcSwap<State>,
    /// Held while a reload or the shutdown changes things; `true` once shut down.
    changing: tokio::sync::Mutex<bool>,
    /// Retirements of earlier reloads still running, stopped by shutdown.
    retiring: Mutex<Vec<JoinHandle<()>>>,
    health: crate::health::Cache,
}

/// What one config built: one consistent view, replaced whole by a reload.
pub(crate) struct State {
    pub(crate) config: Arc<Config>,
    pub(crate) pools: Vec<Arc<PoolEntry>>,
    pub(crate) clusters: Vec<Arc<ClusterEntry>>,
    pub(crate) plugins: Plugins,
    pub(crate) endpoints: Arc<[Endpoint]>,
}

/// A plugin looked up by name, as the runtime runs it.
#[derive(Clone)]
pub struct PluginRef {
    entry: PluginEntry,
}

impl PluginRef {
    /// The plugin's name.
    pub fn name(&self) -> &'static str {
        self.entry.registration.name
    }

    /// The plugin's registration: type, source location, needs.
    pub fn registration(&self) -> &'static Registration {
        self.entry.registration
    }

    /// The plugin's hooks.
    pub fn middleware(&self) -> &Arc<dyn DynMiddleware> {
        &self.entry.middleware
    }
}

/// Starts a [`Runtime`] with control over which plugins it builds.
#[derive(Default)]
pub struct RuntimeBuilder {
    registrations: Option<Vec<&'static Registration>>,
    /// Names given to `only_plugins` that no registration has, reported by `start`.
    unknown: Vec<UnknownPlugin>,
}

impl RuntimeBuilder {
    /// Builds only the plugins called `names` instead of every registered plugin. A name that
    /// is not registered makes [`start`](Self::start) fail, with a suggestion.
    pub fn only_plugins<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        let all: Vec<&'static Registration> = Registration::all().collect();
        let registered: Vec<&str> = all.iter().map(|r| r.name).collect();
        let mut chosen = Vec::new();
        for name in names {
            let found: Vec<_> = all.iter().filter(|r| r.name == name).copied().collect();
            if found.is_empty() {
                self.unknown.push(UnknownPlugin::new(name, &registered));
            }
            chosen.extend(found);
        }
        self.registrations = Some(chosen);
        self
    }

    /// Builds exactly these registrations.
    pub fn registrations(
        mut self,
        registrations: impl IntoIterator<Item = &'static Registration>,
    ) -> Self {
        self.registrations = Some(registrations.into_iter().collect());
        self
    }

    /// Starts from a parsed config.
    pub async fn start(self, config: Config) -> Result<Runtime, StartupError> {
        if !self.unknown.is_empty() {
            return Err(StartupError::UnknownPlugins(self.unknown));
        }
        let registrations = self
            .registrations
            .unwrap_or_else(|| Registration::all().collect());
        Runtime::start(config, registrations).await
    }

    /// Starts from a config file.
    pub async fn start_file(self, path: impl AsRef<Path>) -> Result<Runtime, StartupError> {
        self.start(config::load(path.as_ref())?).await
    }

    /// Starts from config JSON.
    pub async fn start_json(self, json: &str) -> Result<Runtime, StartupError> {
        self.start(config::parse(json)?).await
    }
}

impl Runtime {
    /// Reads the gateway config at `path`, builds every pool, cluster and plugin.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self, StartupError> {
        RuntimeBuilder::default().start_file(path).await
    }

    /// Like [`Runtime::from_file`], with the config given as JSON text.
    pub async fn from_json(json: &str) -> Result<Self, StartupError> {
        RuntimeBuilder::default().start_json(json).await
    }

    /// A builder, to choose which plugins to build.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    async fn start(
        config: Config,
        mut registrations: Vec<&'static Registration>,
    ) -> Result<Self, StartupError> {
        registrations.sort_by_key(|r| (r.name, r.type_name));
        tls::install_default_provider();
        validate(&config, &registrations)?;

        let staged = connections::stage(&config, &[], &[]).await?;
        let (pools, clusters) = staged.handles();
        let selectors = host::selectors(pools, clusters);
        let built = match registry::build(&registrations, &config, &selectors, None) {
            Ok(built) => built,
            Err(error) => {
                staged.discard();
                return Err(error);
            }
        };
        if let Err(error) = lifecycle::init(&built.fresh).await {
            staged.discard();
            return Err(error);
        }
        let state = State::new(config, staged.pools, staged.clusters, built.plugins);
        Ok(Self {
            inner: Arc::new(Inner {
                registrations,
                selectors,
                state: ArcSwap::from_pointee(state),
                changing: tokio::sync::Mutex::new(false),
                retiring: Mutex::new(Vec::new()),
                health: crate::health::Cache::default(),
            }),
        })
    }

    /// Replaces the running config with the one at `path` (see [`Runtime::reload`]).
    pub async fn reload_file(&self, path: impl AsRef<Path>) -> Result<ReloadReport, StartupError> {
        self.reload(config::load(path.as_ref())?).await
    }

    /// Replaces the running config with `json` (see [`Runtime::reload`]).
    pub async fn reload_json(&self, json: &str) -> Result<ReloadReport, StartupError> {
        self.reload(config::parse(json)?).await
    }

    /// Replaces the running config with `config`, without a restart and without failing
    /// requests.
    ///
    /// The new config is checked completely first, as at startup: with any problem nothing
    /// changes and the error lists every one. Then pools and clusters whose options did not
    /// change are kept as they are; changed ones are built again and swapped in behind the
    /// handles plugins already hold (commands already running finish on the old connections,
    /// which close once idle); new ones are opened; removed ones close once the plugins that
    /// used them are gone. Plugin instances whose settings, place or connections changed are
    /// built again and their `init` hooks run before the swap; the instances they replace get
    /// their `shutdown` hook once their requests are done. A failure on the way (a pool that
    /// cannot connect, a plugin that does not build or whose `init` fails) undoes everything
    /// and leaves the running config as it was.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, StartupError> {
        let changing = self.inner.changing.lock().await;
        if *changing {
            return Err(StartupError::ShutDown);
        }
        validate(&config, &self.inner.registrations)?;
        let old = self.inner.state.load_full();
        let staged = connections::stage(&config, &old.pools, &old.clusters).await?;
        let swapped = staged.swap_in();
        // While plugins are built, the selectors find old and new connections alike.
        let (new_pools, new_clusters) = staged.handles();
        let old_pools = old.pools.iter().map(|p| p.handle());
        let old_clusters = old.clusters.iter().map(|c| c.handle());
        host::replace_selectors(
            &self.inner.selectors,
            old_pools.chain(new_pools.iter().cloned()),
            old_clusters.chain(new_clusters.iter().cloned()),
        );
        let undo = |swapped: crate::connections::SwappedOut| {
            swapped.swap_back();
            staged.discard();
            host::replace_selectors(
                &self.inner.selectors,
                old.pools.iter().map(|p| p.handle()),
                old.clusters.iter().map(|c| c.handle()),
            );
        };
        let built = match registry::build(
            &self.inner.registrations,
            &config,
            &self.inner.selectors,
            Some(&old.plugins),
        ) {
            Ok(built) => built,
            Err(error) => {
                undo(swapped);
                return Err(error);
            }
        };
        if let Err(error) = lifecycle::init(&built.fresh).await {
            undo(swapped);
            return Err(error);
        }

        // Commit: from here on nothing fails.
        host::replace_selectors(&self.inner.selectors, new_pools, new_clusters);
        let state = State::new(config, staged.pools, staged.clusters, built.plugins);
        let report = ReloadReport {
            pools: staged.pool_changes,
            clusters: staged.cluster_changes,
            plugins: plugin_changes(&old.plugins, &state.plugins, &built.fresh),
            endpoints: endpoint_changes(&old.config, &state.config),
        };
        self.inner.state.store(Arc::new(state));
        drop(old);
        let retiring = Retiring {
            plugins: built.dropped,
            swapped,
            removed_pools: staged.removed_pools,
            removed_clusters: staged.removed_clusters,
        };
        let task = tokio::spawn(retiring.run());
        match self.inner.retiring.lock() {
            Ok(mut tasks) => tasks.push(task),
            Err(poisoned) => poisoned.into_inner().push(task),
        }
        tracing::info!(%report, "redplug config reloaded");
        Ok(report)
    }

    fn state(&self) -> Arc<State> {
        self.inner.state.load_full()
    }

    /// The built plugin of type `T`, if `T` is registered and was built at the service level
    /// (a plugin the config lists at endpoints has an instance per place, and none here).
    pub fn get<T: Plugin>(&self) -> Option<Arc<T>> {
        let state = self.state();
        let name = state.plugins.by_type.get(&std::any::TypeId::of::<T>())?;
        let entry = state.plugins.by_name.get(name)?;
        entry.any.clone().downcast::<T>().ok()
    }

    /// The built service-level plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<PluginRef> {
        let state = self.state();
        state.plugins.by_name.get(name).map(|entry| PluginRef {
            entry: entry.clone(),
        })
    }

    /// Every built service-level plugin, by name.
    pub fn plugins(&self) -> Vec<PluginRef> {
        let state = self.state();
        state
            .plugins
            .by_name
            .values()
            .map(|entry| PluginRef {
                entry: entry.clone(),
            })
            .collect()
    }

    /// Lookups by name over every configured pool and cluster.
    pub fn selectors(&self) -> RedisSelectors {
        self.inner.selectors.clone()
    }

    /// The config the runtime runs now.
    pub fn config(&self) -> Arc<Config> {
        self.state().config.clone()
    }

    /// The endpoints the config lists, in file order, each with the plugin chain of the
    /// endpoint and of each backend: what a host mounts. A reload replaces them: take them
    /// again after one.
    pub fn endpoints(&self) -> Arc<[Endpoint]> {
        self.state().endpoints.clone()
    }

    /// Gives the pool `pool` new credentials for the data server (`user_name` and `password`
    /// as in its config; `None` sends none): the connections it opens from now on
    /// authenticate with them, while open connections keep their sessions, so nothing healthy
    /// is dropped. Use it after the server's password changed (a server that answers
    /// `WRONGPASS` to new connections stops doing so at once). They last until a reload
    /// changes the pool's credentials in the config, which rotates them the same way.
    pub fn set_credentials(
        &self,
        pool: &str,
        user_name: Option<&str>,
        password: Option<&str>,
    ) -> Result<(), UnknownPool> {
        let state = self.state();
        let Some(entry) = state.pools.iter().find(|entry| entry.config.name == pool) else {
            return Err(UnknownPool {
                name: pool.to_owned(),
                pools: state
                    .pools
                    .iter()
                    .map(|entry| entry.config.name.clone())
                    .collect(),
            });
        };
        entry.engine.set_credentials(user_name, password);
        tracing::info!(pool, "new credentials for the pool's new connections");
        Ok(())
    }

    /// Connection counts of every pool.
    pub fn pool_status(&self) -> Vec<PoolStatus> {
        self.state()
            .pools
            .iter()
            .map(|entry| PoolBackend::status(&*entry.engine))
            .collect()
    }

    /// Each pool and cluster: whether it answers a `PING` now and how fast, its connections
    /// and its last error; and whether every connection some plugin requires answers (ready).
    /// Results are at most a second old: health checks from probes cost Redis one `PING` per
    /// connection a second at most.
    pub async fn health(&self) -> Arc<Health> {
        let state = self.state();
        self.inner.health.get(&state).await
    }

    /// Runs every plugin instance's `shutdown` hook (once, the last built first), then stops
    /// maintenance and closes every connection. Commands issued afterwards fail with an error
    /// saying the runtime is shut down. Call it after the host stopped taking requests.
    pub async fn shutdown(&self) {
        let mut changing = self.inner.changing.lock().await;
        if *changing {
            return;
        }
        *changing = true;
        let state = self.state();
        lifecycle::shutdown(&state.plugins.all).await;
        let retiring = match self.inner.retiring.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in retiring {
            // A retirement waits for requests to end; at shutdown nothing is left to wait for.
            task.abort();
            let _ = task.await;
        }
        for entry in &state.pools {
            entry.engine.close();
        }
        for entry in &state.clusters {
            entry.engine.close();
        }
        tracing::info!("redplug runtime shut down");
    }
}

impl State {
    fn new(
        config: Config,
        pools: Vec<Arc<PoolEntry>>,
        clusters: Vec<Arc<ClusterEntry>>,
        plugins: Plugins,
    ) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .zip(plugins.endpoints.iter().zip(&plugins.backends))
            .map(|(endpoint, (chain, backends))| Endpoint::new(endpoint, chain, backends))
            .collect();
        Self {
            config: Arc::new(config),
            pools,
            clusters,
            plugins,
            endpoints,
        }
    }
}

/// Everything about `config` that can be checked before anything connects, every problem at
/// once: the names plugins ask for, the plugins chains list, and every instance's settings.
fn validate(config: &Config, registrations: &[&'static Registration]) -> Result<(), StartupError> {
    for warning in &config.warnings {
        tracing::warn!(path = %warning.path, "{}", warning.message);
    }
    // Names first: a typo must not wait for (or be hidden by) a network failure.
    registry::check_unique(registrations)?;
    check_names(registrations, config)?;
    let mut problems = scopes::check(config, registrations);
    problems.extend(registry::check_configs(registrations, config));
    match ConfigErrors::new(problems, None) {
        Some(errors) => Err(StartupError::Config(errors)),
        None => Ok(()),
    }
}

/// The plugin instances a reload kept, built and dropped, as `<plugin> at <scope>`.
fn plugin_changes(old: &Plugins, new: &Plugins, fresh: &[PluginEntry]) -> Changes {
    let label = |entry: &PluginEntry| format!("{} at {}", entry.registration.name, entry.scope);
    let old_labels: Vec<String> = old.all.iter().map(label).collect();
    let new_labels: Vec<String> = new.all.iter().map(label).collect();
    let fresh_labels: Vec<String> = fresh.iter().map(label).collect();
    let mut changes = Changes::default();
    for name in &new_labels {
        if !fresh_labels.contains(name) {
            changes.kept.push(name.clone());
        } else if old_labels.contains(name) {
            changes.rebuilt.push(name.clone());
        } else {
            changes.added.push(name.clone());
        }
    }
    changes.removed = old_labels
        .into_iter()
        .filter(|name| !new_labels.contains(name))
        .collect();
    changes
}

/// The endpoints a reload kept, changed, added and removed, as `<METHOD> <path>`.
fn endpoint_changes(old: &Config, new: &Config) -> Changes {
    let label = |e: &crate::config::EndpointConfig| format!("{} {}", e.method, e.endpoint);
    let mut changes = Changes::default();
    for endpoint in &new.endpoints {
        let before = old
            .endpoints
            .iter()
            .find(|e| e.method == endpoint.method && e.endpoint == endpoint.endpoint);
        match before {
            // The place in the file is no change to the endpoint.
            Some(before) if same_endpoint(before, endpoint) => changes.kept.push(label(endpoint)),
            Some(_) => changes.rebuilt.push(label(endpoint)),
            None => changes.added.push(label(endpoint)),
        }
    }
    for endpoint in &old.endpoints {
        let still = new
            .endpoints
            .iter()
            .any(|e| e.method == endpoint.method && e.endpoint == endpoint.endpoint);
        if !still {
            changes.removed.push(label(endpoint));
        }
    }
    changes
}

fn same_endpoint(a: &crate::config::EndpointConfig, b: &crate::config::EndpointConfig) -> bool {
    let mut b = b.clone();
    b.path.clone_from(&a.path);
    // Paths inside (scopes, settings) follow the endpoint's place too.
    let strip = |e: &crate::config::EndpointConfig| {
        let mut e = e.clone();
        e.path.clear();
        if let Some(scope) = &mut e.plugins {
            scope.path.clear();
            for plugin in &mut scope.plugins {
                plugin.name_path.clear();
                if let Some((_, at)) = &mut plugin.settings {
                    at.clear();
                }
            }
        }
        for backend in &mut e.backends {
            backend.path.clear();
            if let Some(scope) = &mut backend.plugins {
                scope.path.clear();
                for plugin in &mut scope.plugins {
                    plugin.name_path.clear();
                    if let Some((_, at)) = &mut plugin.settings {
                        at.clear();
                    }
                }
            }
        }
        e
    };
    strip(a) == strip(&b)
}

/// Every required need of every plugin against the configured names, before anything
/// connects; all misses are reported together.
fn check_names(
    registrations: &[&'static Registration],
    config: &Config,
) -> Result<(), StartupError> {
    let missing = names::unresolved(
        registrations,
        &config.redis.pool_names(),
        &config.redis.cluster_names(),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StartupError::Unresolved(missing))
    }
}
