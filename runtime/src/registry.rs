//! The registry walk: every `#[derive(Plugin)]` type linked into the binary, its needs
//! resolved once against the configured connections, and the plugin built.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redplug::{
    BuildContext, DynMiddleware, Need, NeedKind, RedisSelectors, Registration, Resolved,
};

use crate::config::Config;
use crate::error::{StartupError, UnresolvedNeed};

/// One built plugin as the runtime keeps it.
#[derive(Clone)]
pub struct PluginEntry {
    /// Its registration (name, type, needs, source location).
    pub registration: &'static Registration,
    /// The plugin as middleware, for the pipeline.
    pub middleware: Arc<dyn DynMiddleware>,
    /// The plugin as its own type, for `Runtime::get::<T>()`.
    pub any: Arc<dyn Any + Send + Sync>,
    /// What each need resolved to: `None` for an optional need with no such name.
    pub received: Vec<Option<String>>,
}

/// Every built plugin, by name and by type.
#[derive(Clone, Default)]
pub struct Plugins {
    pub(crate) by_name: BTreeMap<&'static str, PluginEntry>,
    pub(crate) by_type: HashMap<TypeId, &'static str>,
}

/// Rejects two registrations with one name, naming both types and where they are declared.
pub fn check_unique(registrations: &[&'static Registration]) -> Result<(), StartupError> {
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

/// Looks up every need of every plugin once. Returns the resolutions in need order, or every
/// required need that does not resolve.
pub fn resolve(
    registrations: &[&'static Registration],
    selectors: &RedisSelectors,
) -> Result<Vec<Vec<Resolved>>, StartupError> {
    let mut unresolved = Vec::new();
    let mut all = Vec::with_capacity(registrations.len());
    for registration in registrations {
        let mut resolved = Vec::with_capacity(registration.needs.len());
        for need in registration.needs {
            let found = match need.kind {
                NeedKind::Pool => {
                    let pool = selectors.pool(need.name);
                    let hit = pool.is_some();
                    resolved.push(Resolved::Pool(pool));
                    hit
                }
                NeedKind::Cluster => {
                    let cluster = selectors.cluster(need.name);
                    let hit = cluster.is_some();
                    resolved.push(Resolved::Cluster(cluster));
                    hit
                }
            };
            if found {
                continue;
            }
            if need.optional {
                tracing::warn!(
                    plugin = registration.name,
                    field = need.field,
                    "optional {} `{}` is not configured; the field is None",
                    need.kind,
                    need.name
                );
                continue;
            }
            unresolved.push(describe_missing(registration, need, selectors));
        }
        all.push(resolved);
    }
    if unresolved.is_empty() {
        Ok(all)
    } else {
        Err(StartupError::Unresolved(unresolved))
    }
}

fn describe_missing(
    registration: &Registration,
    need: &Need,
    selectors: &RedisSelectors,
) -> UnresolvedNeed {
    unresolved_need(
        registration,
        need,
        &selectors.pool_names(),
        &selectors.cluster_names(),
    )
}

/// Describes `need` of `registration` as unresolved against the configured `pools` and
/// `clusters` names: a near name of the same kind, or the same name configured as the other
/// kind. Shared by startup and by `redplug check`, which resolves without connecting.
pub fn unresolved_need(
    registration: &Registration,
    need: &Need,
    pools: &[&str],
    clusters: &[&str],
) -> UnresolvedNeed {
    let (same, other, other_kind) = match need.kind {
        NeedKind::Pool => (pools, clusters, NeedKind::Cluster),
        NeedKind::Cluster => (clusters, pools, NeedKind::Pool),
    };
    UnresolvedNeed {
        plugin: registration.name.to_owned(),
        type_name: registration.type_name.to_owned(),
        field: need.field.to_owned(),
        kind: need.kind,
        name: need.name.to_owned(),
        did_you_mean: closest(need.name, same),
        other_kind: other.contains(&need.name).then_some(other_kind),
        configured: same.iter().map(|name| (*name).to_owned()).collect(),
    }
}

/// The configured name most like `wanted`, if any is close enough to be a typo.
pub fn closest(wanted: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(wanted, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(wanted.len()) / 3).max(1))
        .min()
        .map(|(_, candidate)| candidate.to_owned())
}

/// Resolves and builds every plugin in `registrations`.
pub fn build(
    registrations: Vec<&'static Registration>,
    config: &Config,
    selectors: &RedisSelectors,
) -> Result<Plugins, StartupError> {
    check_unique(&registrations)?;
    let resolved = resolve(&registrations, selectors)?;
    let mut plugins = Plugins::default();
    let mut errors = Vec::new();
    for (registration, resolved) in registrations.into_iter().zip(resolved) {
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
        match registration.build(&mut context) {
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
                plugin = %crate::config::text::shown(name),
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

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_near_names_only() {
        let names = ["redis_at_eight", "redis_at_seven", "sessions"];
        assert_eq!(
            closest("redis_at_eigth", &names).as_deref(),
            Some("redis_at_eight")
        );
        assert_eq!(closest("session", &names).as_deref(), Some("sessions"));
        assert_eq!(closest("cache", &names), None);
    }
}
