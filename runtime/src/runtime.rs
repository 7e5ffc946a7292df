//! [`Runtime`]: what a gateway host starts once and keeps for its lifetime.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redplug::host::{self, DynMiddleware, PoolBackend};
use redplug::{NeedKind, Plugin, PoolStatus, RedisSelectors, Registration};
use tokio::task::JoinHandle;

use crate::cluster::ClusterEngine;
use crate::config::ConfigErrors;
use crate::config::{self, Config, PoolConfig};
use crate::endpoint::Endpoint;
use crate::error::{StartupError, UnknownPlugin};
use crate::net::dial::Connector;
use crate::net::tls;
use crate::pool::PoolEngine;
use crate::pool::maintenance::{self, Limits};
use crate::registry::{self, PluginEntry, Plugins};
use crate::{failure, lifecycle, names, scopes};

/// The running redplug host: every configured pool and cluster, and every registered plugin
/// built with its connections. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pools: Vec<Arc<PoolEngine>>,
    clusters: Vec<Arc<ClusterEngine>>,
    selectors: RedisSelectors,
    plugins: Plugins,
    endpoints: Vec<Endpoint>,
    maintenance: Mutex<Vec<JoinHandle<()>>>,
    /// Set by the first `shutdown`, so that plugins' shutdown hooks run once.
    shut_down: AtomicBool,
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
        for warning in &config.warnings {
            tracing::warn!(path = %warning.path, "{}", warning.message);
        }
        tls::install_default_provider();
        registrations.sort_by_key(|r| (r.name, r.type_name));
        // Names first: a typo must not wait for (or be hidden by) a network failure.
        registry::check_unique(&registrations)?;
        check_names(&registrations, &config)?;
        let mut problems = scopes::check(&config, &registrations);
        problems.extend(registry::check_configs(&registrations, &config));
        if let Some(errors) = ConfigErrors::new(problems, None) {
            return Err(StartupError::Config(errors));
        }

        let mut pools = Vec::with_capacity(config.redis.connection_pools.len());
        let mut maintenance_tasks = Vec::new();
        let built = async {
            for pool_config in &config.redis.connection_pools {
                let engine = build_pool(pool_config)?;
                let limits = Limits::new(&pool_config.options);
                if pool_config.options.min_idle_conns > 0 {
                    maintenance::top_up(&engine, pool_config.options.min_idle_conns)
                        .await
                        .map_err(|source| StartupError::Connect {
                            kind: NeedKind::Pool,
                            name: pool_config.name.clone(),
                            source,
                        })?;
                }
                maintenance_tasks.push(maintenance::spawn(&engine, limits));
                pools.push(engine);
            }
            let mut clusters = Vec::with_capacity(config.redis.clusters.len());
            for cluster_config in &config.redis.clusters {
                clusters.push(ClusterEngine::new(cluster_config).await?);
            }
            Ok::<_, StartupError>(clusters)
        };
        let clusters = match built.await {
            Ok(clusters) => clusters,
            Err(error) => {
                for engine in &pools {
                    engine.close();
                }
                for task in &maintenance_tasks {
                    task.abort();
                }
                return Err(error);
            }
        };

        let selectors = host::selectors(
            pools.iter().map(PoolEngine::handle),
            clusters.iter().map(ClusterEngine::handle),
        );
        let close = || {
            for engine in &pools {
                engine.close();
            }
            for cluster in &clusters {
                cluster.close();
            }
            for task in &maintenance_tasks {
                task.abort();
            }
        };
        let plugins = match registry::build(registrations, &config, &selectors) {
            Ok(plugins) => plugins,
            Err(error) => {
                close();
                return Err(error);
            }
        };
        if let Err(error) = lifecycle::init(&plugins.all).await {
            close();
            return Err(error);
        }
        let endpoints = config
            .endpoints
            .iter()
            .zip(plugins.endpoints.iter().zip(&plugins.backends))
            .map(|(endpoint, (chain, backends))| Endpoint::new(endpoint, chain, backends))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pools,
                clusters,
                selectors,
                plugins,
                endpoints,
                maintenance: Mutex::new(maintenance_tasks),
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// The built plugin of type `T`, if `T` is registered and was built.
    pub fn get<T: Plugin>(&self) -> Option<Arc<T>> {
        let name = self
            .inner
            .plugins
            .by_type
            .get(&std::any::TypeId::of::<T>())?;
        let entry = self.inner.plugins.by_name.get(name)?;
        entry.any.clone().downcast::<T>().ok()
    }

    /// The built plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<PluginRef> {
        self.inner.plugins.by_name.get(name).map(|entry| PluginRef {
            entry: entry.clone(),
        })
    }

    /// Every built plugin, by name.
    pub fn plugins(&self) -> impl Iterator<Item = PluginRef> + '_ {
        self.inner.plugins.by_name.values().map(|entry| PluginRef {
            entry: entry.clone(),
        })
    }

    /// Lookups by name over every configured pool and cluster.
    pub fn selectors(&self) -> RedisSelectors {
        self.inner.selectors.clone()
    }

    /// The config the runtime was started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Connection counts of every pool.
    pub fn pool_status(&self) -> Vec<PoolStatus> {
        self.inner.pools.iter().map(|p| p.status()).collect()
    }

    /// The endpoints the config lists, in file order, each with the plugin chain of the
    /// endpoint and of each backend: what a host mounts.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// Runs every plugin instance's `shutdown` hook (once, the last built first), then stops
    /// maintenance and closes every connection. Commands issued afterwards fail with an error
    /// saying the runtime is shut down. Call it after the host stopped taking requests.
    pub async fn shutdown(&self) {
        if !self.inner.shut_down.swap(true, Ordering::AcqRel) {
            lifecycle::shutdown(&self.inner.plugins.all).await;
        }
        let tasks = match self.inner.maintenance.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // An aborted task reports cancellation; nothing else can come back.
            let _ = task.await;
        }
        for pool in &self.inner.pools {
            pool.close();
        }
        for cluster in &self.inner.clusters {
            cluster.close();
        }
        tracing::info!("redplug runtime shut down");
    }
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

fn build_pool(config: &PoolConfig) -> Result<Arc<PoolEngine>, StartupError> {
    let tls = tls::connector(config.options.tls.as_ref()).map_err(|source| StartupError::Tls {
        kind: NeedKind::Pool,
        name: config.name.clone(),
        source,
    })?;
    let connector = Connector::new(
        failure::pool(&config.name).into(),
        config.address.clone(),
        config.db,
        &config.options,
        tls,
    );
    PoolEngine::new(config, connector).map_err(|message| StartupError::Setup {
        kind: NeedKind::Pool,
        name: config.name.clone(),
        message,
    })
}
