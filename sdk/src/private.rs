//! What generated code reaches through `::redplug::__private`. Nothing here is a stable API.
//!
//! The field traits carry `#[diagnostic::on_unimplemented]` so that a field of the wrong type
//! gets our message, pointing at the field's type, instead of a bare trait-bound error.

pub use inventory;

pub use crate::registry::{BuildContext, Need, NeedKind, Registration, SourceLocation};

use crate::registry::{Injected, InjectedHandle};
use crate::{RedisCluster, RedisPool, RedisScript, RedisSelectors};

/// Field types `#[redis_pool("name")]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[redis_pool(\"...\")]` needs a field of type `RedisPool` or `Option<RedisPool>`, not `{Self}`",
    label = "this type cannot hold a Redis pool",
    note = "use `RedisPool`, or `Option<RedisPool>` if the gateway may run without this pool; for a cluster use `#[redis_cluster(\"...\")]` with `RedisCluster`"
)]
pub trait PoolField: Sized {
    /// `true` for `Option<RedisPool>`.
    const OPTIONAL: bool;
    /// `None` when a required pool is missing.
    fn from_resolved(pool: Option<RedisPool>) -> Option<Self>;
    /// The pool the field holds, if any.
    fn injected(&self) -> Option<RedisPool>;
}

impl PoolField for RedisPool {
    const OPTIONAL: bool = false;
    fn from_resolved(pool: Option<RedisPool>) -> Option<Self> {
        pool
    }
    fn injected(&self) -> Option<RedisPool> {
        Some(self.clone())
    }
}

impl PoolField for Option<RedisPool> {
    const OPTIONAL: bool = true;
    fn from_resolved(pool: Option<RedisPool>) -> Option<Self> {
        Some(pool)
    }
    fn injected(&self) -> Option<RedisPool> {
        self.clone()
    }
}

/// Field types `#[redis_cluster("name")]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[redis_cluster(\"...\")]` needs a field of type `RedisCluster` or `Option<RedisCluster>`, not `{Self}`",
    label = "this type cannot hold a Redis cluster",
    note = "use `RedisCluster`, or `Option<RedisCluster>` if the gateway may run without this cluster; for a single server use `#[redis_pool(\"...\")]` with `RedisPool`"
)]
pub trait ClusterField: Sized {
    /// `true` for `Option<RedisCluster>`.
    const OPTIONAL: bool;
    /// `None` when a required cluster is missing.
    fn from_resolved(cluster: Option<RedisCluster>) -> Option<Self>;
    /// The cluster the field holds, if any.
    fn injected(&self) -> Option<RedisCluster>;
}

impl ClusterField for RedisCluster {
    const OPTIONAL: bool = false;
    fn from_resolved(cluster: Option<RedisCluster>) -> Option<Self> {
        cluster
    }
    fn injected(&self) -> Option<RedisCluster> {
        Some(self.clone())
    }
}

impl ClusterField for Option<RedisCluster> {
    const OPTIONAL: bool = true;
    fn from_resolved(cluster: Option<RedisCluster>) -> Option<Self> {
        Some(cluster)
    }
    fn injected(&self) -> Option<RedisCluster> {
        self.clone()
    }
}

/// Field types `#[redis_script("...")]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[redis_script(\"...\")]` needs a field of type `RedisScript`, not `{Self}`",
    label = "this type cannot hold a Lua script",
    note = "declare the field as `RedisScript` and run it with `self.<field>.key(...).arg(...).invoke(&mut connection)`"
)]
pub trait ScriptField: Sized {
    /// Builds the field from the script the derive read.
    fn from_script(script: RedisScript) -> Self;
}

impl ScriptField for RedisScript {
    fn from_script(script: RedisScript) -> Self {
        script
    }
}

/// The handles a plugin's pool and cluster fields hold, collected by generated code.
#[derive(Default)]
pub struct Injections(Vec<Injected>);

impl Injections {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn pool(&mut self, field: &'static str, pool: Option<RedisPool>) {
        if let Some(pool) = pool {
            self.0.push(Injected {
                field,
                handle: InjectedHandle::Pool(pool),
            });
        }
    }

    pub fn cluster(&mut self, field: &'static str, cluster: Option<RedisCluster>) {
        if let Some(cluster) = cluster {
            self.0.push(Injected {
                field,
                handle: InjectedHandle::Cluster(cluster),
            });
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Injected> {
        self.0
    }
}

/// Field types `#[redis_selectors]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[redis_selectors]` needs a field of type `RedisSelectors`, not `{Self}`",
    label = "this type cannot hold the selectors"
)]
pub trait SelectorsField: Sized {
    /// Builds the field from the runtime's selectors.
    fn from_selectors(selectors: RedisSelectors) -> Self;
}

impl SelectorsField for RedisSelectors {
    fn from_selectors(selectors: RedisSelectors) -> Self {
        selectors
    }
}

/// Fields without a redplug attribute are built with `Default`.
#[diagnostic::on_unimplemented(
    message = "field of type `{Self}` has no redplug attribute and `{Self}` does not implement `Default`",
    label = "the derive builds this field with `Default::default()`",
    note = "implement `Default` for `{Self}`, or mark the field `#[redis_pool(\"name\")]`, `#[redis_cluster(\"name\")]`, `#[redis_selectors]`, `#[redis_script(\"path\")]` or `#[plugin(config)]`"
)]
pub trait DefaultField: Sized {
    /// `Default::default()`.
    fn default_field() -> Self;
}

impl<T: Default> DefaultField for T {
    fn default_field() -> Self {
        T::default()
    }
}

/// The `#[plugin(config)]` field type must deserialize.
#[diagnostic::on_unimplemented(
    message = "`#[plugin(config)]` needs a type that implements `serde::Deserialize`, and `{Self}` does not",
    label = "the plugin's config is deserialized into this type",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`"
)]
pub trait ConfigField: serde::de::DeserializeOwned {}

impl<T: serde::de::DeserializeOwned> ConfigField for T {}

/// The `#[plugin(config)]` field, read from `context`. `build` and `check_config` both call
/// this one function, so that a type that does not deserialize gets one error, not one per
/// generated function.
pub fn config_field<T: ConfigField>(
    context: &BuildContext<'_>,
    type_name: &'static str,
    fallback: Option<T>,
) -> Result<T, crate::BuildError> {
    context.config(type_name, fallback)
}

/// Autoref specialisation: `(&&ConfigDefault::<T>::new()).fallback()` is `Some(T::default())`
/// when `T: Default` and `None` otherwise, decided at compile time for a concrete `T`.
pub struct ConfigDefault<T>(core::marker::PhantomData<T>);

impl<T> ConfigDefault<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(core::marker::PhantomData)
    }
}

/// Picked when `T: Default` (the receiver needs one auto-ref fewer).
pub trait ViaDefault<T> {
    fn fallback(&self) -> Option<T>;
}

impl<T: Default> ViaDefault<T> for &ConfigDefault<T> {
    fn fallback(&self) -> Option<T> {
        Some(T::default())
    }
}

/// Picked when `T` has no `Default`.
pub trait ViaNoDefault<T> {
    fn fallback(&self) -> Option<T>;
}

impl<T> ViaNoDefault<T> for ConfigDefault<T> {
    fn fallback(&self) -> Option<T> {
        None
    }
}
