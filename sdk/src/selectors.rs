//! [`RedisSelectors`]: name-based lookups for plugins that choose a connection at run time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use redis::RedisResult;

use crate::{RedisCluster, RedisPool};

/// Every configured pool and cluster by name, as KrakenD's selector functions offer them.
///
/// Prefer `#[redis_pool("name")]` on a field: it is resolved once at startup and a typo stops
/// the gateway from starting. Selectors are for plugins whose connection names come from their
/// own config; an unknown name gives `None`, exactly as KrakenD's selectors return nil.
///
/// The names follow the gateway's config: when the host reloads it, every clone of the
/// selectors sees the new set of pools and clusters.
#[derive(Clone, Default)]
pub struct RedisSelectors {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    current: ArcSwap<Connections>,
    lookups: AtomicU64,
}

#[derive(Default)]
struct Connections {
    pools: HashMap<String, RedisPool>,
    clusters: HashMap<String, RedisCluster>,
}

impl Connections {
    fn new(
        pools: impl IntoIterator<Item = RedisPool>,
        clusters: impl IntoIterator<Item = RedisCluster>,
    ) -> Self {
        Self {
            pools: pools
                .into_iter()
                .map(|p| (p.name().to_owned(), p))
                .collect(),
            clusters: clusters
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect(),
        }
    }
}

impl RedisSelectors {
    /// Builds the lookup table (see [`crate::host::selectors`]).
    pub(crate) fn new(
        pools: impl IntoIterator<Item = RedisPool>,
        clusters: impl IntoIterator<Item = RedisCluster>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(Connections::new(pools, clusters)),
                lookups: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces what every clone of these selectors finds (see [`crate::host::replace_selectors`]).
    pub(crate) fn replace(
        &self,
        pools: impl IntoIterator<Item = RedisPool>,
        clusters: impl IntoIterator<Item = RedisCluster>,
    ) {
        self.inner
            .current
            .store(Arc::new(Connections::new(pools, clusters)));
    }

    /// The pool called `name`, or `None` when no pool has that name.
    pub fn pool(&self, name: &str) -> Option<RedisPool> {
        self.inner.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner.current.load().pools.get(name).cloned()
    }

    /// The cluster called `name`, or `None` when no cluster has that name.
    pub fn cluster(&self, name: &str) -> Option<RedisCluster> {
        self.inner.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner.current.load().clusters.get(name).cloned()
    }

    /// KrakenD's cluster selector: a handle to the master of cluster `cluster` that owns
    /// `key`'s hash slot. `Ok(None)` when the cluster is not configured.
    pub async fn cluster_node_for_key(
        &self,
        cluster: &str,
        key: impl AsRef<[u8]>,
    ) -> RedisResult<Option<RedisPool>> {
        match self.cluster(cluster) {
            Some(cluster) => cluster.node_for_key(key.as_ref()).await,
            None => Ok(None),
        }
    }

    /// Names of every configured pool, sorted.
    pub fn pool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.current.load().pools.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Names of every configured cluster, sorted.
    pub fn cluster_names(&self) -> Vec<String> {
        let current = self.inner.current.load();
        let mut names: Vec<String> = current.clusters.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// How many name lookups these selectors have answered since startup, counting the ones
    /// the runtime made while injecting fields.
    pub fn lookups(&self) -> u64 {
        self.inner.lookups.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for RedisSelectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSelectors")
            .field("pools", &self.pool_names())
            .field("clusters", &self.cluster_names())
            .finish()
    }
}
