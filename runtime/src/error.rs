//! [`StartupError`]: why the runtime refused to start.

use std::fmt;

use redplug::{BuildError, NeedKind, SourceLocation};

use crate::config::ConfigErrors;
use crate::tls::TlsSetupError;

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

impl fmt::Display for UnresolvedNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` ({}), field `{}`: #[{}(\"{}\")] names no configured {}",
            self.plugin,
            self.type_name,
            self.field,
            self.kind.attribute(),
            self.name,
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
                self.name,
                self.name,
                match other {
                    NeedKind::Pool => "RedisPool",
                    NeedKind::Cluster => "RedisCluster",
                }
            );
        }
        if let Some(guess) = &self.did_you_mean {
            write!(
                f,
                "; the closest configured name is `{guess}`: make the attribute and the config agree"
            )?;
        }
        if self.configured.is_empty() {
            let section = match self.kind {
                NeedKind::Pool => "extra_config.redis.connection_pools[]",
                NeedKind::Cluster => "extra_config.redis.clusters[]",
            };
            write!(f, " (no {} is configured: add one to {section})", self.kind)
        } else {
            let names: Vec<String> = self.configured.iter().map(|n| format!("`{n}`")).collect();
            write!(f, " (configured {}s: {})", self.kind, names.join(", "))
        }
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
