//! The other side of the plugin API: what a host (a gateway runtime such as `redplug-runtime`)
//! implements behind the handles, and how it builds and calls plugins. Plugin code never needs
//! this module.
//!
//! A host builds a [`PoolBackend`] for every configured pool and a [`ClusterBackend`] for every
//! cluster, wraps each in a handle ([`pool`], [`cluster`]), puts them all in [`selectors`],
//! resolves each registered plugin's [`Need`](crate::Need)s into a [`BuildContext`], and calls
//! [`build`]. The [`BuiltPlugin`] it gets back is both the plugin's own type (for typed lookups)
//! and a [`DynMiddleware`] it calls per request.

use std::any::Any;
use std::sync::Arc;

use redis::aio::ConnectionLike;

pub use crate::handle::{ClusterBackend, PoolBackend};
pub use crate::middleware::DynMiddleware;
pub use crate::registry::{BuildContext, BuiltPlugin, Injected, InjectedHandle, Resolved};
use crate::{BuildError, PooledConnection, RedisCluster, RedisPool, RedisSelectors, Registration};

/// The [`RedisPool`] handle plugins receive for `backend`.
pub fn pool(backend: Arc<dyn PoolBackend>) -> RedisPool {
    RedisPool::from_backend(backend)
}

/// The [`RedisCluster`] handle plugins receive for `backend`.
pub fn cluster(backend: Arc<dyn ClusterBackend>) -> RedisCluster {
    RedisCluster::from_backend(backend)
}

/// A connection checked out for one caller, as [`RedisPool::checkout`] hands it out.
pub fn connection(inner: Box<dyn ConnectionLike + Send + Sync>) -> PooledConnection {
    PooledConnection::new(inner)
}

/// The lookups by name over every configured pool and cluster, injected with
/// `#[redis_selectors]`.
pub fn selectors(
    pools: impl IntoIterator<Item = RedisPool>,
    clusters: impl IntoIterator<Item = RedisCluster>,
) -> RedisSelectors {
    RedisSelectors::new(pools, clusters)
}

/// Makes every clone of `selectors` find these pools and clusters from now on: a host calls
/// it when it reloads the gateway's config.
pub fn replace_selectors(
    selectors: &RedisSelectors,
    pools: impl IntoIterator<Item = RedisPool>,
    clusters: impl IntoIterator<Item = RedisCluster>,
) {
    selectors.replace(pools, clusters);
}

/// Builds the plugin `registration` describes, from the connections resolved in `context`.
pub fn build(
    registration: &Registration,
    context: &mut BuildContext<'_>,
) -> Result<BuiltPlugin, BuildError> {
    registration.build(context)
}

/// Checks the plugin's own config in `context` the way [`build`] would read it, without
/// building the plugin: `context` may hold no connections. A host calls it for every place a
/// plugin runs before it connects to anything, to report every bad config at once.
pub fn check_config(
    registration: &Registration,
    context: &BuildContext<'_>,
) -> Result<(), BuildError> {
    registration.check_config(context)
}

/// The pools and clusters a built plugin holds in its `#[redis_pool]` and `#[redis_cluster]`
/// fields (an `Option` field that got `None` holds nothing), with the fields that hold them.
/// `plugin` is [`BuiltPlugin::any`] of a plugin built from `registration`; anything else holds
/// nothing. A host loads the plugin's [`scripts`](Registration::scripts) into these servers
/// before the plugin's first request.
pub fn injected(registration: &Registration, plugin: &(dyn Any + Send + Sync)) -> Vec<Injected> {
    registration.injected(plugin)
}
