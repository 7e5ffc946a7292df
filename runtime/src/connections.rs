//! The configured pools and clusters: building them from the config, and on a reload telling
//! which to keep, which to rebuild behind their slots, which to add and which to remove.

use std::sync::Arc;
use std::time::Duration;

use redplug::NeedKind;
use redplug::{RedisCluster, RedisPool};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::cluster::ClusterEngine;
use crate::config::{
    ClusterConfig, Config, ConnectionOptions, PoolConfig, PoolServer, SentinelConfig,
};
use crate::error::StartupError;
use crate::failure;
use crate::net::dial::Connector;
use crate::net::sentinel::Sentinels;
use crate::net::tls;
use crate::pool::PoolEngine;
use crate::pool::maintenance::{self, Limits};
use crate::reload::Changes;
use crate::slot::Slot;

/// One configured pool: its config, the slot its handles point at, and the engine in it.
pub(crate) struct PoolEntry {
    pub(crate) config: PoolConfig,
    pub(crate) slot: Arc<Slot<PoolEngine>>,
    pub(crate) engine: Arc<PoolEngine>,
    /// Stopped when the entry goes (a reload replaced or removed the pool); shared with the
    /// entry that takes over when only the credentials change.
    _maintenance: Arc<Maintenance>,
}

/// One configured cluster: its config, the slot its handles point at, and the engine in it.
pub(crate) struct ClusterEntry {
    pub(crate) config: ClusterConfig,
    pub(crate) slot: Arc<Slot<ClusterEngine>>,
    pub(crate) engine: Arc<ClusterEngine>,
    /// Publishes its connection gauges; stopped when the entry goes.
    _gauges: Maintenance,
}

impl PoolEntry {
    pub(crate) fn handle(&self) -> RedisPool {
        self.slot.handle()
    }
}

impl ClusterEntry {
    pub(crate) fn handle(&self) -> RedisCluster {
        self.slot.handle()
    }
}

/// A pool's maintenance task, aborted when dropped.
struct Maintenance(JoinHandle<()>);

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connections a config asks for, built but not yet in use: on a reload, rebuilt engines
/// wait outside their slots until [`Staged::swap_in`].
pub(crate) struct Staged {
    pub(crate) pools: Vec<Arc<PoolEntry>>,
    pub(crate) clusters: Vec<Arc<ClusterEntry>>,
    /// Entries of the previous state that the config no longer has.
    pub(crate) removed_pools: Vec<Arc<PoolEntry>>,
    pub(crate) removed_clusters: Vec<Arc<ClusterEntry>>,
    /// Rebuilt pools: the slot and the engine to put in it.
    pool_swaps: Vec<(Arc<Slot<PoolEngine>>, Arc<PoolEngine>)>,
    cluster_swaps: Vec<(Arc<Slot<ClusterEngine>>, Arc<ClusterEngine>)>,
    /// Engines built here (added and rebuilt), to close if the reload does not go through.
    built_pools: Vec<Arc<PoolEngine>>,
    /// Pools kept with new credentials: the engine, the new config and the old one. The new
    /// credentials apply at [`Staged::swap_in`].
    rotations: Vec<(Arc<PoolEngine>, PoolConfig, PoolConfig)>,
    built_clusters: Vec<Arc<ClusterEngine>>,
    pub(crate) pool_changes: Changes,
    pub(crate) cluster_changes: Changes,
}

/// The engines a swap took out of their slots.
#[derive(Default)]
pub(crate) struct SwappedOut {
    pub(crate) pools: Vec<(Arc<Slot<PoolEngine>>, Arc<PoolEngine>)>,
    pub(crate) clusters: Vec<(Arc<Slot<ClusterEngine>>, Arc<ClusterEngine>)>,
    /// Pools given new credentials, with their config before.
    rotated: Vec<(Arc<PoolEngine>, PoolConfig)>,
}

/// Builds what `config` asks for. With `previous` (a reload), a pool or cluster whose config
/// did not change is taken over as it is, one whose config changed gets a new engine behind
/// its old slot, and a new name gets a new slot. On failure everything built here is closed.
pub(crate) async fn stage(
    config: &Config,
    previous_pools: &[Arc<PoolEntry>],
    previous_clusters: &[Arc<ClusterEntry>],
) -> Result<Staged, StartupError> {
    let mut staged = Staged {
        pools: Vec::with_capacity(config.redis.connection_pools.len()),
        clusters: Vec::with_capacity(config.redis.clusters.len()),
        removed_pools: Vec::new(),
        removed_clusters: Vec::new(),
        pool_swaps: Vec::new(),
        cluster_swaps: Vec::new(),
        built_pools: Vec::new(),
        rotations: Vec::new(),
        built_clusters: Vec::new(),
        pool_changes: Changes::default(),
        cluster_changes: Changes::default(),
    };
    let built = async {
        for pool in &config.redis.connection_pools {
            let before = previous_pools.iter().find(|p| p.config.name == pool.name);
            if let Some(before) = before.filter(|before| before.config == *pool) {
                staged.pools.push(before.clone());
                staged.pool_changes.kept.push(pool.name.clone());
                continue;
            }
            if let Some(before) =
                before.filter(|before| only_credentials_differ(&before.config, pool))
            {
                staged.pools.push(Arc::new(PoolEntry {
                    config: pool.clone(),
                    slot: before.slot.clone(),
                    engine: before.engine.clone(),
                    _maintenance: before._maintenance.clone(),
                }));
                staged
                    .rotations
                    .push((before.engine.clone(), pool.clone(), before.config.clone()));
                staged.pool_changes.credentials.push(pool.name.clone());
                continue;
            }
            let engine = build_pool(pool).await?;
            staged.built_pools.push(engine.clone());
            let slot = match before {
                Some(before) => {
                    staged
                        .pool_swaps
                        .push((before.slot.clone(), engine.clone()));
                    staged.pool_changes.rebuilt.push(pool.name.clone());
                    before.slot.clone()
                }
                None => {
                    staged.pool_changes.added.push(pool.name.clone());
                    Slot::new(&pool.name, engine.clone())
                }
            };
            let maintenance = maintenance::spawn(&engine, Limits::new(&pool.options));
            staged.pools.push(Arc::new(PoolEntry {
                config: pool.clone(),
                slot,
                engine,
                _maintenance: Arc::new(Maintenance(maintenance)),
            }));
        }
        for cluster in &config.redis.clusters {
            let before = previous_clusters
                .iter()
                .find(|c| c.config.name == cluster.name);
            if let Some(before) = before.filter(|before| before.config == *cluster) {
                staged.clusters.push(before.clone());
                staged.cluster_changes.kept.push(cluster.name.clone());
                continue;
            }
            let engine = ClusterEngine::new(cluster).await?;
            staged.built_clusters.push(engine.clone());
            let slot = match before {
                Some(before) => {
                    staged
                        .cluster_swaps
                        .push((before.slot.clone(), engine.clone()));
                    staged.cluster_changes.rebuilt.push(cluster.name.clone());
                    before.slot.clone()
                }
                None => {
                    staged.cluster_changes.added.push(cluster.name.clone());
                    Slot::new(&cluster.name, engine.clone())
                }
            };
            let gauges = Maintenance(spawn_gauges(&engine));
            staged.clusters.push(Arc::new(ClusterEntry {
                config: cluster.clone(),
                slot,
                engine,
                _gauges: gauges,
            }));
        }
        Ok::<_, StartupError>(())
    };
    if let Err(error) = built.await {
        staged.discard();
        return Err(error);
    }
    for before in previous_pools {
        if !config
            .redis
            .connection_pools
            .iter()
            .any(|p| p.name == before.config.name)
        {
            staged.pool_changes.removed.push(before.config.name.clone());
            staged.removed_pools.push(before.clone());
        }
    }
    for before in previous_clusters {
        if !config
            .redis
            .clusters
            .iter()
            .any(|c| c.name == before.config.name)
        {
            staged
                .cluster_changes
                .removed
                .push(before.config.name.clone());
            staged.removed_clusters.push(before.clone());
        }
    }
    Ok(staged)
}

impl Staged {
    /// Puts every rebuilt engine in its slot and gives kept pools their new credentials; hands
    /// back the engines taken out.
    pub(crate) fn swap_in(&self) -> SwappedOut {
        for (engine, new, _) in &self.rotations {
            set_credentials(engine, new);
        }
        SwappedOut {
            rotated: self
                .rotations
                .iter()
                .map(|(engine, _, old)| (engine.clone(), old.clone()))
                .collect(),
            pools: self
                .pool_swaps
                .iter()
                .map(|(slot, engine)| (slot.clone(), slot.swap(engine.clone())))
                .collect(),
            clusters: self
                .cluster_swaps
                .iter()
                .map(|(slot, engine)| (slot.clone(), slot.swap(engine.clone())))
                .collect(),
        }
    }

    /// Closes every engine built here, for a reload that does not go through.
    pub(crate) fn discard(&self) {
        for engine in &self.built_pools {
            engine.close();
        }
        for engine in &self.built_clusters {
            engine.close();
        }
    }

    /// The handles of every staged pool and cluster.
    pub(crate) fn handles(&self) -> (Vec<RedisPool>, Vec<RedisCluster>) {
        (
            self.pools.iter().map(|p| p.handle()).collect(),
            self.clusters.iter().map(|c| c.handle()).collect(),
        )
    }
}

impl SwappedOut {
    /// Puts the engines taken out back in their slots, for a reload that does not go through.
    pub(crate) fn swap_back(self) {
        for (slot, engine) in self.pools {
            slot.swap(engine);
        }
        for (slot, engine) in self.clusters {
            slot.swap(engine);
        }
        for (engine, old) in self.rotated {
            set_credentials(&engine, &old);
        }
    }
}

/// Whether two configs of one pool differ in `user_name` or `password` alone.
fn only_credentials_differ(before: &PoolConfig, after: &PoolConfig) -> bool {
    let mut same = before.clone();
    same.options.user_name = after.options.user_name.clone();
    same.options.password = after.options.password.clone();
    same == *after
}

fn set_credentials(engine: &PoolEngine, config: &PoolConfig) {
    let options = &config.options;
    engine.set_credentials(
        options.user_name.as_ref().map(|user| user.expose()),
        options.password.as_ref().map(|password| password.expose()),
    );
}

/// Publishes a cluster's connection gauges once a second while it is open.
fn spawn_gauges(engine: &Arc<ClusterEngine>) -> JoinHandle<()> {
    let weak = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match weak.upgrade() {
                Some(engine) if !engine.is_closed() => engine.record_status(),
                _ => return,
            }
        }
    })
}

/// One pool, its `min_idle_conns` opened.
async fn build_pool(config: &PoolConfig) -> Result<Arc<PoolEngine>, StartupError> {
    let tls = tls::connector(config.options.tls.as_ref()).map_err(|source| StartupError::Tls {
        kind: NeedKind::Pool,
        name: config.name.clone(),
        source,
    })?;
    let owner: Arc<str> = failure::pool(&config.name).into();
    let connector = match &config.server {
        PoolServer::Address(address) => {
            Connector::new(owner, address.clone(), config.db, &config.options, tls)
        }
        PoolServer::Sentinel(sentinel) => {
            let sentinels = sentinels(config, sentinel, &owner, tls.as_ref())?;
            Connector::to_master(owner, sentinels, config.db, &config.options, tls)
        }
    };
    let engine = PoolEngine::new(config, connector).map_err(|message| StartupError::Setup {
        kind: NeedKind::Pool,
        name: config.name.clone(),
        message,
    })?;
    if let Some(sentinels) = engine.sentinels() {
        // Follows `+switch-master` until the pool closes.
        let weak = Arc::downgrade(&engine);
        tokio::spawn(sentinels.watch(
            move |master| {
                if let Some(engine) = weak.upgrade() {
                    engine.follow_master(master);
                }
            },
            engine.closing(),
        ));
    }
    if config.options.min_idle_conns > 0
        && let Err(source) = maintenance::top_up(&engine, config.options.min_idle_conns).await
    {
        engine.close();
        return Err(StartupError::Connect {
            kind: NeedKind::Pool,
            name: config.name.clone(),
            source,
        });
    }
    Ok(engine)
}

/// The sentinels of a pool behind Sentinel: their own credentials, and their own TLS or else the
/// pool's (`pool_tls`).
fn sentinels(
    config: &PoolConfig,
    sentinel: &SentinelConfig,
    owner: &Arc<str>,
    pool_tls: Option<&TlsConnector>,
) -> Result<Arc<Sentinels>, StartupError> {
    let tls = match &sentinel.tls {
        Some(own) => tls::connector(Some(own)).map_err(|source| StartupError::Tls {
            kind: NeedKind::Pool,
            name: config.name.clone(),
            source,
        })?,
        None => pool_tls.cloned(),
    };
    let options = ConnectionOptions {
        user_name: sentinel.user_name.clone(),
        password: sentinel.password.clone(),
        client_name: None,
        ..config.options.clone()
    };
    let connectors = sentinel
        .addresses
        .iter()
        .map(|address| {
            let connector =
                Connector::new(owner.clone(), address.clone(), 0, &options, tls.clone());
            (address.clone(), connector)
        })
        .collect();
    Ok(Arc::new(Sentinels::new(
        owner.clone(),
        &sentinel.master_name,
        connectors,
        config.options.dial_timeout,
    )))
}

/// How long an engine swapped out by a reload may keep serving what was already running on
/// it (commands and their retries, exclusive connections) before it is closed anyway.
pub(crate) const RETIRE_WITHIN: Duration = Duration::from_secs(30);
