//! [`StartupError`]: why the runtime refused to start.

use std::fmt;

use redplug::{BuildError, NeedKind, SourceLocation};

use crate::config::ConfigErrors;
use crate::config::text::{invisible_difference, shown};
use crate::net::tls::TlsSetupError;

/// Why [`Runtime`](crate::Runtime) did not start. Every variant says which pool, cluster or
/// plugin is at fault and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The config file is missing, is not JSON, or has invalid values.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A pool's or cluster's `tls` settings could not be used.
    #[error("{kind} `{name}`: {source}")]
    Tls {
        /// `pool` or `cluster`.
        kind: NeedKind,
        /// The configured name.
        name: String,
        /// What was wrong.
        #[source]
        source: TlsSetupError,
    },
    /// Opening the connections a pool or cluster must have at startup (`min_idle_conns`, or a
    /// cluster's topology) failed.
    #[error("{kind} `{name}` could not open its connections at startup: {source}")]
    Connect {
        /// `pool` or `cluster`.
        kind: NeedKind,
        /// The configured name.
        name: String,
        /// What the network or the server said.
        #[source]
        source: redis::RedisError,
    },
    /// A pool or cluster could not be set up at all.
    #[error("{kind} `{name}`: {message}")]
    Setup {
        /// `pool` or `cluster`.
        kind: NeedKind,
        /// The configured name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// Two linked plugin types registered the same name.
    #[error(
        "two plugins are named `{name}`: `{first_type}` ({first_location}) and `{second_type}` \
         ({second_location}); give one of them another name with #[plugin(name = \"...\")]"
    )]
    DuplicatePlugin {
        /// The shared name.
        name: String,
        /// One of the types.
        first_type: String,
        /// Where it was declared.
        first_location: SourceLocation,
        /// The other type.
        second_type: String,
        /// Where it was declared.
        second_location: SourceLocation,
    },
    /// Plugins asked for connections the config does not define.
    #[error("{}", Unresolved(.0))]
    Unresolved(Vec<UnresolvedNeed>),
    /// Plugins could not be built (usually their own config is invalid).
    #[error("{}", BuildErrors(.0))]
    Build(Vec<BuildError>),
    /// A plugin's `init` hook failed or panicked. The plugins initialized before it were shut
    /// down again and every connection closed.
    #[error("plugin `{plugin}` ({scope}) failed to initialize: {source}")]
    Init {
        /// The plugin's name.
        plugin: String,
        /// Where the failing instance runs: `service`, or an endpoint or backend.
        scope: String,
        /// What its hook returned.
        #[source]
        source: redplug::PluginError,
    },
    /// The runtime was shut down, so it cannot be reloaded.
    #[error("the runtime is shut down; start a new one instead of reloading it")]
    ShutDown,
    /// A plugin's Lua script (`#[redis_script("...")]`) was refused by a server it was loaded
    /// into at startup, usually because the Lua does not compile. The plugins initialized
    /// before it were shut down again and every connection closed.
    #[error(
        "plugin `{plugin}` ({scope}): the script of field `{field}` ({file}, relative to the \
         plugin crate's Cargo.toml) was refused by {server}: {message}; fix the Lua in {file} \
         and rebuild"
    )]
    Script {
        /// The plugin's name.
        plugin: &'static str,
        /// Where the instance runs: `service`, or an endpoint or backend.
        scope: String,
        /// The `RedisScript` field.
        field: &'static str,
        /// The script's file as the attribute names it.
        file: &'static str,
        /// The server that refused it: ``pool `name` `` or a cluster's master.
        server: String,
        /// The server's reply, such as `ERR Error compiling script (new function): ...`.
        message: String,
    },
    /// [`RuntimeBuilder::only_plugins`](crate::RuntimeBuilder::only_plugins) named plugins that
    /// are not registered.
    #[error("{}", UnknownPlugins(.0))]
    UnknownPlugins(Vec<UnknownPlugin>),
}

/// A plugin asked for by name that is not registered in this binary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no plugin named `{}` is registered{}; registered: {registered}",
    shown(name),
    did_you_mean.as_ref().map(|g| format!(" (did you mean `{g}`?)")).unwrap_or_default()
)]
pub struct UnknownPlugin {
    /// The name asked for.
    pub name: String,
    /// A registered name close to it.
    pub did_you_mean: Option<String>,
    /// Every registered name, comma separated.
    pub registered: String,
}

impl UnknownPlugin {
    /// `name`, looked up in vain among `registered`.
    pub(crate) fn new(name: &str, registered: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            did_you_mean: crate::names::closest(name, registered).map(str::to_owned),
            registered: if registered.is_empty() {
                "none (link the crates that hold them)".to_owned()
            } else {
                registered.join(", ")
            },
        }
    }
}

/// A pool asked for by name that the runtime's config does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no pool named `{}` in the config; the pools are: {}",
    shown(name),
    if pools.is_empty() { "none".to_owned() } else { pools.join(", ") }
)]
pub struct UnknownPool {
    /// The name asked for.
    pub name: String,
    /// Every configured pool.
    pub pools: Vec<String>,
}

struct UnknownPlugins<'a>(&'a [UnknownPlugin]);

impl fmt::Display for UnknownPlugins<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} plugins asked for are not registered:", many.len())?;
                for unknown in many {
                    write!(f, "\n  - {unknown}")?;
                }
                Ok(())
            }
        }
    }
}

/// One plugin field whose named connection is not configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnresolvedNeed {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's Rust type.
    pub type_name: String,
    /// The field.
    pub field: String,
    /// What the field asks for.
    pub kind: NeedKind,
    /// The name it asks for.
    pub name: String,
    /// The names of that kind the config does define.
    pub configured: Vec<String>,
    /// A configured name close to the requested one.
    pub did_you_mean: Option<String>,
    /// Set when the name exists, but as the other kind.
    pub other_kind: Option<NeedKind>,
}

/// How many configured names an unresolved need lists before it just counts the rest.
const LISTED_NAMES: usize = 10;

impl fmt::Display for UnresolvedNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` ({}), field `{}`: #[{}(\"{}\")] names no configured {}",
            self.plugin,
            self.type_name,
            self.field,
            self.kind.attribute(),
            shown(&self.name),
            self.kind
        )?;
        if let Some(other) = self.other_kind {
            let (section, attribute) = match other {
                NeedKind::Pool => ("connection_pools[]", "redis_pool"),
                NeedKind::Cluster => ("clusters[]", "redis_cluster"),
            };
            return write!(
                f,
                "; `{}` is a {other} (in {section}): declare the field with #[{attribute}(\"{}\")] and type {}",
                shown(&self.name),
                shown(&self.name),
                match other {
                    NeedKind::Pool => "RedisPool",
                    NeedKind::Cluster => "RedisCluster",
                }
            );
        }
        if let Some(guess) = &self.did_you_mean {
            write!(f, "; the closest configured name is `{}`", shown(guess))?;
            match invisible_difference(&self.name, guess) {
                Some(difference) => write!(
                    f,
                    ", which looks the same but is not: {difference}; retype the name in the \
                     attribute or the config"
                )?,
                None => f.write_str(": make the attribute and the config agree")?,
            }
        }
        if self.configured.is_empty() {
            let section = match self.kind {
                NeedKind::Pool => "extra_config.redis.connection_pools[]",
                NeedKind::Cluster => "extra_config.redis.clusters[]",
            };
            return write!(f, " (no {} is configured: add one to {section})", self.kind);
        }
        let names: Vec<String> = self
            .configured
            .iter()
            .take(LISTED_NAMES)
            .map(|name| format!("`{}`", shown(name)))
            .collect();
        let more = self.configured.len().saturating_sub(LISTED_NAMES);
        write!(f, " (configured {}s: {}", self.kind, names.join(", "))?;
        if more > 0 {
            write!(f, ", and {more} more")?;
        }
        f.write_str(")")
    }
}

struct Unresolved<'a>(&'a [UnresolvedNeed]);

impl fmt::Display for Unresolved<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "{count} plugin field{} name{} a Redis connection that is not configured \
             (make the field an Option to run without it):",
            if count == 1 { "" } else { "s" },
            if count == 1 { "s" } else { "" },
        )?;
        for need in self.0 {
            write!(f, "\n  - {need}")?;
        }
        Ok(())
    }
}

struct BuildErrors<'a>(&'a [BuildError]);

impl fmt::Display for BuildErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} plugin(s) could not be built:", self.0.len())?;
        for error in self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(name: &str, configured: Vec<String>, did_you_mean: Option<&str>) -> UnresolvedNeed {
        UnresolvedNeed {
            plugin: "needy".into(),
            type_name: "plugins::Needy".into(),
            field: "redis".into(),
            kind: NeedKind::Pool,
            name: name.into(),
            configured,
            did_you_mean: did_you_mean.map(str::to_owned),
            other_kind: None,
        }
    }

    #[test]
    fn ten_thousand_configured_names_are_counted_not_listed() {
        let configured: Vec<String> = (0..10_000).map(|i| format!("pool_{i}")).collect();
        let text = need("cache", configured, None).to_string();
        assert!(text.ends_with(", and 9990 more)"), "{text}");
        assert!(text.len() < 400, "{} characters", text.len());
    }

    #[test]
    fn a_suggestion_that_looks_identical_says_which_invisible_character_differs() {
        let found = "redis_at_eight\u{200b}";
        let text = need("redis_at_eight", vec![found.into()], Some(found)).to_string();
        assert!(
            text.contains(
                "`redis_at_eight\\u{200b}`, which looks the same but is not: the \
                           configured name has U+200B ZERO WIDTH SPACE at its end"
            ),
            "{text}"
        );
        assert!(!text.contains('\u{200b}'), "{text:?}");
    }
}
