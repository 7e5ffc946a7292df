//! Which plugins the config lists per endpoint and backend, checked against the plugins linked
//! into the binary: startup and `redplug check` refuse a name that is not registered, each with
//! its JSON path and the registered name it most likely meant.

use redplug::Registration;

use crate::config::text::shown;
use crate::config::{Config, ConfigError};
use crate::names::closest;
use crate::registry;

/// One problem per plugin name listed in a scope that no registration has.
pub(crate) fn check(config: &Config, registrations: &[&'static Registration]) -> Vec<ConfigError> {
    let registered: Vec<&str> = registrations.iter().map(|r| r.name).collect();
    registry::scopes(config)
        .flat_map(|(scope, _)| &scope.plugins)
        .filter(|plugin| !registered.contains(&plugin.name.as_str()))
        .map(|plugin| {
            let hint = match closest(&plugin.name, &registered) {
                Some(guess) => format!("; did you mean `{guess}`?"),
                None if registered.is_empty() => {
                    "; no plugin is linked into this binary (link the crates that hold them)"
                        .to_owned()
                }
                None => format!(
                    "; the plugins linked into this binary are {}",
                    list(&registered)
                ),
            };
            ConfigError {
                path: plugin.name_path.clone(),
                message: format!("names no registered plugin{hint}"),
                value: Some(format!("\"{}\"", shown(&plugin.name))),
            }
        })
        .collect()
}

/// `a`, `b` and `c`, at most ten of them.
fn list(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("`{n}`")).collect();
    match names.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}
