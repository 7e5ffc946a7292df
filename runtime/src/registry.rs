//! The registry walk: every `#[derive(Plugin)]` type linked into the binary, its needs
//! resolved once against the configured connections, and the plugin built.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redplug::host::{self, BuildContext, DynMiddleware, Resolved};
use redplug::{NeedKind, RedisSelectors, Registration};

use crate::config::Config;
use crate::config::text::shown;
use crate::error::StartupError;
use crate::names::closest;

/// One built plugin as the runtime keeps it.
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
}

/// Every built plugin, by name and by type.
#[derive(Clone, Default)]
pub(crate) struct Plugins {
    pub(crate) by_name: BTreeMap<&'static str, PluginEntry>,
    pub(crate) by_type: HashMap<TypeId, &'static str>,
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

/// Resolves and builds every plugin in `registrations`.
pub(crate) fn build(
    registrations: Vec<&'static Registration>,
    config: &Config,
    selectors: &RedisSelectors,
) -> Result<Plugins, StartupError> {
    check_unique(&registrations)?;
    let mut plugins = Plugins::default();
    let mut errors = Vec::new();
    for registration in registrations {
        let resolved = resolve(registration, selectors);
        let received = resolved
            .iter()
            .map(|r| match r {
                Resolved::Pool(pool) => pool.as_ref().map(|p| p.name().to_owned()),
                Resolved::Cluster(cluster) => cluster.as_ref().map(|c| c.name().to_owned()),
            })
            .collect();
        let mut context = BuildContext::new(
            registration.name,
            registration.needs,
            resolved,
            selectors,
            config.plugins.get(registration.name),
        );
        match host::build(registration, &mut context) {
            Ok(built) => {
                plugins
                    .by_type
                    .insert(registration.type_id(), registration.name);
                plugins.by_name.insert(
                    registration.name,
                    PluginEntry {
                        registration,
                        middleware: built.middleware,
                        any: built.any,
                        received,
                    },
                );
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(StartupError::Build(errors));
    }
    for name in config.plugins.keys() {
        if !plugins.by_name.contains_key(name.as_str()) {
            let known: Vec<&str> = plugins.by_name.keys().copied().collect();
            tracing::warn!(
                plugin = %shown(name),
                did_you_mean = ?closest(name, &known),
                "extra_config[\"plugin/redplug\"] has config for a plugin that is not registered"
            );
        }
    }
    report(&plugins);
    Ok(plugins)
}

/// The startup report: which plugins run and what each received.
fn report(plugins: &Plugins) {
    tracing::info!(count = plugins.by_name.len(), "redplug plugins registered");
    for entry in plugins.by_name.values() {
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
            type_name = registration.type_name,
            location = %registration.location,
            needs = %needs,
            "plugin ready"
        );
    }
}
