//! The registry walk: every `#[derive(Plugin)]` type linked into the binary, its needs
//! resolved once against the configured connections, and the plugin built: once at the
//! service level for a plugin no endpoint lists, and once per place for a plugin that
//! endpoints or backends list, each with the settings of its place.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use redplug::host::{self, BuildContext, DynMiddleware, Resolved};
use redplug::{BuildError, NeedKind, RedisSelectors, Registration};

use crate::config::text::shown;
use crate::config::{Config, ConfigError, EndpointConfig, ScopeConfig, ScopedPlugin};
use crate::error::StartupError;
use crate::names::closest;

/// One built plugin instance as the runtime keeps it.
#[derive(Clone)]
pub(crate) struct PluginEntry {
    /// Its registration (name, type, needs, source location).
    pub(crate) registration: &'static Registration,
    /// The plugin as middleware, for the pipeline.
    pub(crate) middleware: Arc<dyn DynMiddleware>,
    /// The plugin as its own type, for `Runtime::get::<T>()`.
    pub(crate) any: Arc<dyn Any + Send + Sync>,
    /// What each need resolved to: `None` for an optional need with no such name.
    pub(crate) received: Vec<Option<String>>,
    /// Where the instance runs: `service`, or an endpoint or backend (see [`Scope`]).
    pub(crate) scope: Arc<str>,
    /// Where its settings are in the config file, if it has any.
    pub(crate) settings: Option<String>,
    /// The settings it was built with, to tell on a reload whether they changed.
    pub(crate) config: Option<serde_json::Value>,
}

/// Every built plugin: the service-level instances by name and type, the scoped ones with
/// their endpoints, and all of them in the order they were built.
#[derive(Clone, Default)]
pub(crate) struct Plugins {
    pub(crate) by_name: BTreeMap<&'static str, PluginEntry>,
    pub(crate) by_type: HashMap<TypeId, &'static str>,
    /// Every instance, service-level first, then each endpoint's and its backends' in file
    /// order: the order of `init`, and in reverse of `shutdown`.
    pub(crate) all: Vec<PluginEntry>,
    /// The chains of every endpoint, in file order.
    pub(crate) endpoints: Vec<Vec<PluginEntry>>,
    /// The chains of every endpoint's backends.
    pub(crate) backends: Vec<Vec<Vec<PluginEntry>>>,
}

/// Where a plugin instance runs, as logs and reports name it.
pub(crate) struct Scope;

impl Scope {
    /// The single instance of a plugin no endpoint lists.
    pub(crate) const SERVICE: &'static str = "service";

    /// An endpoint: `GET /v1/users/{id}`.
    pub(crate) fn endpoint(endpoint: &EndpointConfig) -> String {
        format!("{} {}", endpoint.method, shown(&endpoint.endpoint))
    }

    /// One backend of an endpoint: `GET /v1/users/{id} backend 0`.
    pub(crate) fn backend(endpoint: &EndpointConfig, index: usize) -> String {
        format!("{} backend {index}", Scope::endpoint(endpoint))
    }
}

/// Rejects two registrations with one name, naming both types and where they are declared.
pub(crate) fn check_unique(registrations: &[&'static Registration]) -> Result<(), StartupError> {
    let mut seen: BTreeMap<&str, &Registration> = BTreeMap::new();
    for registration in registrations {
        if let Some(first) = seen.insert(registration.name, registration) {
            return Err(StartupError::DuplicatePlugin {
                name: registration.name.to_owned(),
                first_type: first.type_name.to_owned(),
                first_location: first.location,
                second_type: registration.type_name.to_owned(),
                second_location: registration.location,
            });
        }
    }
    Ok(())
}

/// Looks up every need of every plugin once, in need order. Names the config does not define
/// give `None`: startup has refused every required one already (see [`crate::names`]), so
/// only optional needs remain, and those are logged.
fn resolve(registration: &Registration, selectors: &RedisSelectors) -> Vec<Resolved> {
    registration
        .needs
        .iter()
        .map(|need| {
            let resolved = match need.kind {
                NeedKind::Pool => Resolved::Pool(selectors.pool(need.name)),
                NeedKind::Cluster => Resolved::Cluster(selectors.cluster(need.name)),
            };
            let found = match &resolved {
                Resolved::Pool(pool) => pool.is_some(),
                Resolved::Cluster(cluster) => cluster.is_some(),
            };
            if !found && need.optional {
                tracing::warn!(
                    plugin = registration.name,
                    field = need.field,
                    "optional {} `{}` is not configured; the field is None",
                    need.kind,
                    shown(need.name)
                );
            }
            resolved
        })
        .collect()
}

/// Where an instance goes once built.
#[derive(Clone, Copy)]
enum Place {
    Service,
    Endpoint(usize),
    Backend(usize, usize),
}

/// One plugin instance to build: which plugin, where it runs, and the listing that put it
/// there (with that place's settings), if any.
struct Planned<'c> {
    registration: &'static Registration,
    place: Place,
    scope: Arc<str>,
    listed: Option<&'c ScopedPlugin>,
}

/// Every instance `config` asks for, in build order: at the service level the plugins that no
/// endpoint or backend lists, then one instance per listing, endpoint by endpoint. Names no
/// registration has are left out (see [`crate::scopes::check`]).
fn plan<'c>(registrations: &[&'static Registration], config: &'c Config) -> Vec<Planned<'c>> {
    let listed: HashSet<&str> = scopes(config)
        .flat_map(|(scope, _)| scope.plugins.iter().map(|plugin| plugin.name.as_str()))
        .collect();
    let by_name: HashMap<&str, &'static Registration> =
        registrations.iter().map(|r| (r.name, *r)).collect();
    let mut planned: Vec<Planned<'c>> = registrations
        .iter()
        .filter(|registration| !listed.contains(registration.name))
        .map(|registration| Planned {
            registration,
            place: Place::Service,
            scope: Arc::from(Scope::SERVICE),
            listed: None,
        })
        .collect();
    let mut chain = |scope: Option<&'c ScopeConfig>, place: Place, label: String| {
        let label: Arc<str> = Arc::from(label);
        let listings = scope.into_iter().flat_map(|scope| &scope.plugins);
        for plugin in listings {
            if let Some(registration) = by_name.get(plugin.name.as_str()) {
                planned.push(Planned {
                    registration,
                    place,
                    scope: label.clone(),
                    listed: Some(plugin),
                });
            }
        }
    };
    for (e, endpoint) in config.endpoints.iter().enumerate() {
        chain(
            endpoint.plugins.as_ref(),
            Place::Endpoint(e),
            Scope::endpoint(endpoint),
        );
        for (b, backend) in endpoint.backends.iter().enumerate() {
            chain(
                backend.plugins.as_ref(),
                Place::Backend(e, b),
                Scope::backend(endpoint, b),
            );
        }
    }
    planned
}

impl<'c> Planned<'c> {
    /// The settings this instance gets, and where they are (or would be) in the file.
    fn settings(&self, config: &'c Config) -> (Option<&'c serde_json::Value>, String) {
        settings(config, self.registration.name, self.listed)
    }
}

/// The settings an instance of `plugin` gets, and where they are (or would be) in the file:
/// those its listing gives, else the service-level ones.
pub(crate) fn settings<'c>(
    config: &'c Config,
    plugin: &str,
    listed: Option<&'c ScopedPlugin>,
) -> (Option<&'c serde_json::Value>, String) {
    if let Some((value, at)) = listed.and_then(|plugin| plugin.settings.as_ref()) {
        return (Some(value), at.clone());
    }
    (config.plugins.get(plugin), service_settings_path(plugin))
}

/// `extra_config["plugin/redplug"]["<plugin>"]`: where a plugin's service-level settings are.
pub(crate) fn service_settings_path(plugin: &str) -> String {
    format!(
        "extra_config{}[{}]",
        crate::config::namespace_segment(),
        shown(&serde_json::Value::from(plugin).to_string())
    )
}

/// Every plugin instance's own config, checked the way building it will read it, before
/// anything connects: one problem per bad config, with its path in the file.
pub(crate) fn check_configs(
    registrations: &[&'static Registration],
    config: &Config,
) -> Vec<ConfigError> {
    let selectors = RedisSelectors::default();
    plan(registrations, config)
        .iter()
        .filter_map(|planned| {
            let (settings, at) = planned.settings(config);
            let registration = planned.registration;
            let context = BuildContext::new(
                registration.name,
                registration.needs,
                Vec::new(),
                &selectors,
                settings,
            )
            .config_at(at.clone());
            let error = host::check_config(registration, &context).err()?;
            Some(match error {
                BuildError::Config { path, message, .. } => ConfigError {
                    path: format!("{at}{path}"),
                    message: format!(
                        "is not a valid config for plugin `{}`: {message}",
                        registration.name
                    ),
                    value: None,
                },
                BuildError::MissingConfig { type_name, .. } => ConfigError {
                    path: at,
                    message: format!(
                        "is missing; plugin `{}` needs a config of type `{type_name}` here (or \
                         implement `Default` for `{type_name}`)",
                        registration.name
                    ),
                    value: None,
                },
                other => ConfigError {
                    path: at,
                    message: other.to_string(),
                    value: None,
                },
            })
        })
        .collect()
}

/// What [`build`] made.
pub(crate) struct Built {
    /// Every instance the config asks for.
    pub(crate) plugins: Plugins,
    /// The instances built by this call, in build order: those whose `init` must run. On a
    /// reload, instances taken over unchanged from before are not among them.
    pub(crate) fresh: Vec<PluginEntry>,
    /// The instances of the previous build that were not taken over, in build order: those
    /// whose `shutdown` must run once they are swapped out.
    pub(crate) dropped: Vec<PluginEntry>,
}

/// Resolves and builds every plugin in `registrations`: at the service level those that no
/// endpoint or backend lists, and one instance per listing for the others. Every plugin named
/// in a scope must be among `registrations` (see [`crate::scopes::check`]).
///
/// With `previous` (a reload), an instance at the same place with the same settings and the
/// same connections is taken over as it is, not built again.
pub(crate) fn build(
    registrations: &[&'static Registration],
    config: &Config,
    selectors: &RedisSelectors,
    previous: Option<&Plugins>,
) -> Result<Built, StartupError> {
    check_unique(registrations)?;
    let mut plugins = Plugins {
        endpoints: vec![Vec::new(); config.endpoints.len()],
        backends: config
            .endpoints
            .iter()
            .map(|endpoint| vec![Vec::new(); endpoint.backends.len()])
            .collect(),
        ..Plugins::default()
    };
    let mut before: HashMap<(&str, String), &PluginEntry> = previous
        .map(|previous| {
            previous
                .all
                .iter()
                .map(|entry| ((entry.registration.name, entry.scope.to_string()), entry))
                .collect()
        })
        .unwrap_or_default();
    let mut fresh = Vec::new();
    let mut errors = Vec::new();
    for planned in plan(registrations, config) {
        let key = (planned.registration.name, planned.scope.to_string());
        let kept = before
            .get(&key)
            .filter(|old| unchanged(old, &planned, config, selectors))
            .map(|old| (*old).clone());
        let entry = match kept {
            Some(entry) => {
                before.remove(&key);
                entry
            }
            None => match build_one(&planned, config, selectors) {
                Ok(entry) => {
                    fresh.push(entry.clone());
                    entry
                }
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            },
        };
        match planned.place {
            Place::Service => {
                let registration = planned.registration;
                plugins
                    .by_type
                    .insert(registration.type_id(), registration.name);
                plugins.by_name.insert(registration.name, entry.clone());
            }
            Place::Endpoint(e) => plugins.endpoints[e].push(entry.clone()),
            Place::Backend(e, b) => plugins.backends[e][b].push(entry.clone()),
        }
        plugins.all.push(entry);
    }
    if !errors.is_empty() {
        return Err(StartupError::Build(errors));
    }
    let known: Vec<&str> = registrations.iter().map(|r| r.name).collect();
    for name in config.plugins.keys() {
        if !known.contains(&name.as_str()) {
            tracing::warn!(
                plugin = %shown(name),
                did_you_mean = ?closest(name, &known),
                "extra_config[\"plugin/redplug\"] has config for a plugin that is not registered"
            );
        }
    }
    let dropped: Vec<PluginEntry> = previous
        .map(|previous| {
            previous
                .all
                .iter()
                .filter(|entry| {
                    before.contains_key(&(entry.registration.name, entry.scope.to_string()))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    report(&fresh, plugins.all.len());
    Ok(Built {
        plugins,
        fresh,
        dropped,
    })
}

/// Whether `old` can serve as the instance `planned` asks for: the same settings, and every
/// need resolving to the same name as when `old` was built.
fn unchanged(
    old: &PluginEntry,
    planned: &Planned<'_>,
    config: &Config,
    selectors: &RedisSelectors,
) -> bool {
    let (settings, _) = planned.settings(config);
    if settings != old.config.as_ref() {
        return false;
    }
    let received: Vec<Option<String>> = resolve(planned.registration, selectors)
        .iter()
        .map(received_name)
        .collect();
    received == old.received
}

fn received_name(resolved: &Resolved) -> Option<String> {
    match resolved {
        Resolved::Pool(pool) => pool.as_ref().map(|p| p.name().to_owned()),
        Resolved::Cluster(cluster) => cluster.as_ref().map(|c| c.name().to_owned()),
    }
}

/// Every scope of `config` that lists plugins, with the endpoint it belongs to.
pub(crate) fn scopes(config: &Config) -> impl Iterator<Item = (&ScopeConfig, &EndpointConfig)> {
    config.endpoints.iter().flat_map(|endpoint| {
        let backends = endpoint
            .backends
            .iter()
            .filter_map(move |backend| backend.plugins.as_ref().map(|scope| (scope, endpoint)));
        endpoint
            .plugins
            .as_ref()
            .map(|scope| (scope, endpoint))
            .into_iter()
            .chain(backends)
    })
}

/// One instance, resolved and built with its settings.
fn build_one(
    planned: &Planned<'_>,
    config: &Config,
    selectors: &RedisSelectors,
) -> Result<PluginEntry, BuildError> {
    let registration = planned.registration;
    let resolved = resolve(registration, selectors);
    let received = resolved.iter().map(received_name).collect();
    let (settings, at) = planned.settings(config);
    let has_settings = settings.is_some();
    let mut context = BuildContext::new(
        registration.name,
        registration.needs,
        resolved,
        selectors,
        settings,
    )
    .config_at(at.clone());
    let built = host::build(registration, &mut context)?;
    Ok(PluginEntry {
        registration,
        middleware: built.middleware,
        any: built.any,
        received,
        scope: planned.scope.clone(),
        settings: has_settings.then_some(at),
        config: settings.cloned(),
    })
}

/// The startup (or reload) report: which plugins were built, where they run and what each
/// received.
fn report(fresh: &[PluginEntry], total: usize) {
    tracing::info!(count = fresh.len(), total, "redplug plugins built");
    for entry in fresh {
        let registration = entry.registration;
        let needs = registration
            .needs
            .iter()
            .zip(&entry.received)
            .map(|(need, got)| match got {
                Some(name) => format!("{} <- {} `{name}`", need.field, need.kind),
                None => format!(
                    "{} <- None ({} `{}` not configured)",
                    need.field, need.kind, need.name
                ),
            })
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            plugin = registration.name,
            scope = %entry.scope,
            settings = entry.settings.as_deref().unwrap_or("none"),
            type_name = registration.type_name,
            location = %registration.location,
            needs = %needs,
            "plugin ready"
        );
    }
}
