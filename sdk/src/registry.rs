//! The [`Plugin`] trait that `#[derive(Plugin)]` implements, and the registration record the
//! derive submits to `inventory` so the runtime can find every plugin linked into the binary.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::middleware::DynMiddleware;
use crate::{BuildError, Middleware, RedisCluster, RedisPool, RedisScript, RedisSelectors};

/// A plugin the runtime can build: its name, the connections it needs and how to construct it
/// once they are resolved.
///
/// Always implemented by `#[derive(Plugin)]`; writing this impl by hand is not supported.
pub trait Plugin: Middleware + Sized {
    /// The name the gateway config and the pipeline use for this plugin.
    const NAME: &'static str;
    /// Every named connection the plugin's fields ask for, in field order.
    const NEEDS: &'static [Need];
    /// Every `#[redis_script("...")]` field, in field order: what the runtime loads into the
    /// servers of the plugin's pools and clusters at startup.
    const SCRIPTS: &'static [PluginScript] = &[];

    /// Builds the plugin from connections the runtime has already resolved.
    #[doc(hidden)]
    fn build(context: &mut BuildContext<'_>) -> Result<Self, BuildError>;

    /// Checks the plugin's own config the way [`Plugin::build`] reads it, without building the
    /// plugin or needing its connections, so that a host can report every bad config before it
    /// connects to anything.
    #[doc(hidden)]
    fn check_config(context: &BuildContext<'_>) -> Result<(), BuildError> {
        let _ = context;
        Ok(())
    }

    /// The handles this instance holds in its pool and cluster fields (see
    /// [`crate::host::injected`]).
    #[doc(hidden)]
    fn injected(&self) -> crate::__private::Injections {
        crate::__private::Injections::new()
    }
}

/// One `#[redis_script("...")]` field of a plugin.
#[derive(Clone, Copy, Debug)]
pub struct PluginScript {
    /// The Rust field.
    pub field: &'static str,
    /// The script it holds: path, source and SHA1.
    pub script: RedisScript,
}

/// A connection handle held by one field of a built plugin (see [`crate::host::injected`]).
#[derive(Clone, Debug)]
pub struct Injected {
    /// The field that holds it.
    pub field: &'static str,
    /// The handle.
    pub handle: InjectedHandle,
}

/// The handle an [`Injected`] field holds.
#[derive(Clone, Debug)]
pub enum InjectedHandle {
    /// A `#[redis_pool("...")]` field's pool.
    Pool(RedisPool),
    /// A `#[redis_cluster("...")]` field's cluster.
    Cluster(RedisCluster),
}

/// One named connection a plugin field asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// The Rust field (`redis`, or `0` for a tuple struct's first field).
    pub field: &'static str,
    /// Whether the field wants a pool or a cluster.
    pub kind: NeedKind,
    /// The configured name the field asks for.
    pub name: &'static str,
    /// `true` for `Option<_>` fields: a missing name gives `None` instead of a startup error.
    pub optional: bool,
}

/// The kind of connection a [`Need`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeedKind {
    /// An entry of `extra_config.redis.connection_pools[]`, from `#[redis_pool("name")]`.
    Pool,
    /// An entry of `extra_config.redis.clusters[]`, from `#[redis_cluster("name")]`.
    Cluster,
}

impl NeedKind {
    /// `pool` or `cluster`, as error messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            NeedKind::Pool => "pool",
            NeedKind::Cluster => "cluster",
        }
    }

    /// The attribute that declares this kind, as a user writes it.
    pub fn attribute(self) -> &'static str {
        match self {
            NeedKind::Pool => "redis_pool",
            NeedKind::Cluster => "redis_cluster",
        }
    }
}

impl fmt::Display for NeedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a plugin type was declared, for error messages that must tell two plugins apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLocation {
    /// The source file, as `file!()` gives it.
    pub file: &'static str,
    /// The line of the `#[derive(Plugin)]`.
    pub line: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What `#[derive(Plugin)]` submits to `inventory` for each plugin type.
pub struct Registration {
    /// The plugin's name ([`Plugin::NAME`]).
    pub name: &'static str,
    /// The Rust type's path (`my_crate::plugins::Counter`).
    pub type_name: &'static str,
    /// Where the type was declared.
    pub location: SourceLocation,
    /// The connections the plugin asks for ([`Plugin::NEEDS`]).
    pub needs: &'static [Need],
    /// The plugin's Lua scripts ([`Plugin::SCRIPTS`]).
    pub scripts: &'static [PluginScript],
    build: fn(&mut BuildContext<'_>) -> Result<BuiltPlugin, BuildError>,
    check_config: fn(&BuildContext<'_>) -> Result<(), BuildError>,
    injected: fn(&(dyn Any + Send + Sync)) -> Vec<Injected>,
    type_id: fn() -> TypeId,
}

impl Registration {
    /// The record for plugin type `T`. Used by generated code.
    #[doc(hidden)]
    pub const fn of<T: Plugin>(type_name: &'static str, location: SourceLocation) -> Self {
        Self {
            name: T::NAME,
            type_name,
            location,
            needs: T::NEEDS,
            scripts: T::SCRIPTS,
            build: build_erased::<T>,
            check_config: T::check_config,
            injected: injected_erased::<T>,
            type_id: TypeId::of::<T>,
        }
    }

    /// Builds the plugin (see [`crate::host::build`]).
    pub(crate) fn build(&self, context: &mut BuildContext<'_>) -> Result<BuiltPlugin, BuildError> {
        (self.build)(context)
    }

    /// Checks the plugin's config (see [`crate::host::check_config`]).
    pub(crate) fn check_config(&self, context: &BuildContext<'_>) -> Result<(), BuildError> {
        (self.check_config)(context)
    }

    /// The handles `plugin` holds (see [`crate::host::injected`]).
    pub(crate) fn injected(&self, plugin: &(dyn Any + Send + Sync)) -> Vec<Injected> {
        (self.injected)(plugin)
    }

    /// The plugin type's `TypeId`.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// Every plugin type linked into this binary, in no particular order.
    pub fn all() -> impl Iterator<Item = &'static Registration> {
        inventory::iter::<Registration>.into_iter()
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("type_name", &self.type_name)
            .field("location", &self.location)
            .field("needs", &self.needs)
            .field("scripts", &self.scripts)
            .finish()
    }
}

inventory::collect!(Registration);

/// `plugin`'s handles when it is a `T`; none when it is something else.
fn injected_erased<T: Plugin>(plugin: &(dyn Any + Send + Sync)) -> Vec<Injected> {
    plugin
        .downcast_ref::<T>()
        .map(|plugin| plugin.injected().into_vec())
        .unwrap_or_default()
}

fn build_erased<T: Plugin>(context: &mut BuildContext<'_>) -> Result<BuiltPlugin, BuildError> {
    let plugin = Arc::new(T::build(context)?);
    Ok(BuiltPlugin {
        any: plugin.clone(),
        middleware: plugin,
    })
}

/// A built plugin, kept by a host both as its concrete type (for typed lookups such as
/// `Runtime::get::<T>()`) and as middleware (to run it). See [`crate::host`].
#[derive(Clone)]
pub struct BuiltPlugin {
    /// The plugin as its own type.
    pub any: Arc<dyn Any + Send + Sync>,
    /// The plugin's hooks.
    pub middleware: Arc<dyn DynMiddleware>,
}

/// A need after the host looked it up: the handle, or `None` when the name is not configured
/// (only possible for optional needs). See [`crate::host`].
#[derive(Clone, Debug)]
pub enum Resolved {
    /// For a `#[redis_pool("...")]` field.
    Pool(Option<RedisPool>),
    /// For a `#[redis_cluster("...")]` field.
    Cluster(Option<RedisCluster>),
}

/// Everything a plugin's constructor may take, prepared by the host (see [`crate::host`]).
/// Generated code calls its methods with the index of the need in [`Plugin::NEEDS`].
pub struct BuildContext<'a> {
    plugin: &'static str,
    needs: &'static [Need],
    resolved: Vec<Resolved>,
    selectors: &'a RedisSelectors,
    config: Option<&'a serde_json::Value>,
    /// Where the config is (or would be) in the gateway's config file, for errors.
    config_at: String,
}

impl<'a> BuildContext<'a> {
    /// `resolved` must hold one entry per need, in the order of `needs`. `config` is the
    /// plugin's service-level config, at `extra_config["plugin/redplug"]["<plugin>"]`, unless
    /// [`BuildContext::config_at`] says where else it comes from.
    pub fn new(
        plugin: &'static str,
        needs: &'static [Need],
        resolved: Vec<Resolved>,
        selectors: &'a RedisSelectors,
        config: Option<&'a serde_json::Value>,
    ) -> Self {
        Self {
            plugin,
            needs,
            resolved,
            selectors,
            config,
            config_at: format!("extra_config[\"plugin/redplug\"][{plugin:?}]"),
        }
    }

    /// Says where in the gateway's config file the plugin's config is (or would be), such as
    /// `endpoints[0].extra_config["plugin/redplug"].rate_limit`, for its errors.
    pub fn config_at(mut self, at: impl Into<String>) -> Self {
        self.config_at = at.into();
        self
    }

    /// The needs this context was prepared for, in the order generated code indexes them.
    pub fn needs(&self) -> &'static [Need] {
        self.needs
    }

    /// The pool resolved for need `index`.
    pub fn pool(&mut self, index: usize) -> Option<RedisPool> {
        match self.resolved.get_mut(index) {
            Some(Resolved::Pool(pool)) => pool.take(),
            _ => None,
        }
    }

    /// The cluster resolved for need `index`.
    pub fn cluster(&mut self, index: usize) -> Option<RedisCluster> {
        match self.resolved.get_mut(index) {
            Some(Resolved::Cluster(cluster)) => cluster.take(),
            _ => None,
        }
    }

    /// The selectors over every configured connection.
    pub fn selectors(&self) -> RedisSelectors {
        self.selectors.clone()
    }

    /// Deserializes the plugin's own config; `fallback` is used when the config is absent
    /// (`Some(Default::default())` when the type has a `Default`).
    pub fn config<T: DeserializeOwned>(
        &self,
        type_name: &'static str,
        fallback: Option<T>,
    ) -> Result<T, BuildError> {
        match self.config {
            Some(value) => serde_path_to_error::deserialize::<_, T>(value).map_err(|error| {
                let path = error.path().to_string();
                BuildError::Config {
                    plugin: self.plugin.to_owned(),
                    at: self.config_at.clone(),
                    path: if path == "." {
                        String::new()
                    } else {
                        format!(".{path}")
                    },
                    message: error.into_inner().to_string(),
                }
            }),
            None => fallback.ok_or_else(|| BuildError::MissingConfig {
                plugin: self.plugin.to_owned(),
                at: self.config_at.clone(),
                type_name,
            }),
        }
    }
}
