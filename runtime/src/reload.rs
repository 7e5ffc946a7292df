//! What a reload changed ([`ReloadReport`]), and retiring what it swapped out: plugin
//! instances get their `shutdown` hook once no request runs through them, and engines are
//! closed once nothing runs on them, each within [`RETIRE_WITHIN`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::ClusterEngine;
use crate::connections::{ClusterEntry, PoolEntry, RETIRE_WITHIN, SwappedOut};
use crate::lifecycle;
use crate::pool::PoolEngine;
use crate::registry::PluginEntry;

/// What one kind of thing did on a reload, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Unchanged, taken over as they were.
    pub kept: Vec<String>,
    /// Changed: built again (pools and clusters behind the handles plugins already hold).
    pub rebuilt: Vec<String>,
    /// New in the config.
    pub added: Vec<String>,
    /// Gone from the config.
    pub removed: Vec<String>,
    /// Pools whose only change was `user_name` or `password`: kept, with their open
    /// connections, and the connections they open from now on use the new credentials.
    pub credentials: Vec<String>,
}

impl Changes {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.rebuilt.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.credentials.is_empty())
    }
}

/// What [`Runtime::reload`](crate::Runtime::reload) changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// `connection_pools[]`, by name.
    pub pools: Changes,
    /// `clusters[]`, by name.
    pub clusters: Changes,
    /// Plugin instances, as `<plugin> at <scope>` (`rate_limit at GET /v1/users/{id}`).
    pub plugins: Changes,
    /// Endpoints, as `<METHOD> <path>`; an endpoint whose settings changed is rebuilt.
    pub endpoints: Changes,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sections = [
            ("pools", &self.pools),
            ("clusters", &self.clusters),
            ("plugins", &self.plugins),
            ("endpoints", &self.endpoints),
        ];
        let mut first = true;
        for (what, changes) in sections {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{what}: {} kept", changes.kept.len())?;
            for (verb, names) in [
                ("rebuilt", &changes.rebuilt),
                ("added", &changes.added),
                ("removed", &changes.removed),
                ("new credentials for", &changes.credentials),
            ] {
                if !names.is_empty() {
                    write!(f, ", {verb} {}", names.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

/// What a committed reload leaves behind to retire.
pub(crate) struct Retiring {
    /// Plugin instances no longer in use, in build order.
    pub(crate) plugins: Vec<PluginEntry>,
    /// Engines taken out of slots that stay.
    pub(crate) swapped: SwappedOut,
    /// Pools and clusters gone from the config.
    pub(crate) removed_pools: Vec<Arc<PoolEntry>>,
    pub(crate) removed_clusters: Vec<Arc<ClusterEntry>>,
}

impl Retiring {
    /// Retires everything: waits (within [`RETIRE_WITHIN`]) until requests stopped running
    /// through the old plugin instances, runs their shutdown hooks (last built first), then
    /// closes each old engine once nothing runs on it.
    pub(crate) async fn run(self) {
        let deadline = Instant::now() + RETIRE_WITHIN;
        // An entry holds the plugin twice (as middleware and as itself); pipelines of requests
        // still running hold more.
        wait_until(deadline, || {
            self.plugins
                .iter()
                .all(|entry| Arc::strong_count(&entry.middleware) <= 2)
        })
        .await;
        lifecycle::shutdown(&self.plugins).await;
        drop(self.plugins);

        let mut pools: Vec<Arc<PoolEngine>> = self
            .swapped
            .pools
            .into_iter()
            .map(|(_, engine)| engine)
            .collect();
        let mut clusters: Vec<Arc<ClusterEngine>> = self
            .swapped
            .clusters
            .into_iter()
            .map(|(_, engine)| engine)
            .collect();
        // A removed pool is closed once no handle to it is left in any plugin: its entry holds
        // its slot once, and its engine is held by the slot and the entry.
        let removed_pools = self.removed_pools;
        let removed_clusters = self.removed_clusters;
        wait_until(deadline, || {
            removed_pools
                .iter()
                .all(|p| Arc::strong_count(&p.slot) <= 1)
                && removed_clusters
                    .iter()
                    .all(|c| Arc::strong_count(&c.slot) <= 1)
        })
        .await;
        for entry in &removed_pools {
            pools.push(entry.engine.clone());
        }
        for entry in &removed_clusters {
            clusters.push(entry.engine.clone());
        }
        drop(removed_pools);
        drop(removed_clusters);
        wait_until(deadline, || {
            pools.iter().all(|engine| engine.is_idle(1))
                && clusters.iter().all(|engine| engine.is_idle(1))
        })
        .await;
        for engine in &pools {
            engine.close();
        }
        for engine in &clusters {
            engine.close();
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                within = ?RETIRE_WITHIN,
                "reload: what the old config used was still busy; closed it anyway"
            );
        } else {
            tracing::info!(
                pools = pools.len(),
                clusters = clusters.len(),
                "reload: closed the connections the old config used"
            );
        }
    }
}

/// Polls `done` until it holds or `deadline` passes.
async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    const POLL: Duration = Duration::from_millis(20);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}
