//! Loading plugins' Lua scripts (`#[redis_script("...")]`) into their servers at startup, right
//! before each instance's `init`: into the server of every pool the instance holds and into
//! every master of every cluster it holds, with `SCRIPT LOAD`. The first request then finds the
//! script with `EVALSHA` instead of paying for the `NOSCRIPT` fallback.
//!
//! A script the server refuses (a Lua syntax error) stops startup: it would fail on every
//! request. A server that cannot be reached only gets a warning: pools connect lazily, so a
//! gateway starts while a server is down, and `RedisScript` loads the script on first use.
//! Each server gets each script once per startup, however many instances share it, and a pool
//! that could not be reached is not tried again for the next script.

use std::collections::HashSet;

use redis::cluster_routing::Slot;
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use redplug::host::{self, InjectedHandle};
use redplug::{PluginScript, RedisCluster, RedisPool};

use crate::error::StartupError;
use crate::registry::PluginEntry;

/// What was loaded where during one startup.
#[derive(Default)]
pub(crate) struct Preloader {
    /// `(server's pool name, script SHA1)` pairs already loaded.
    loaded: HashSet<(String, &'static str)>,
    /// Pools whose server did not answer: later scripts skip them.
    unreachable: HashSet<String>,
}

/// One server to load scripts into, and how reports name it.
struct Target {
    pool: RedisPool,
    shown: String,
}

impl Preloader {
    /// Loads `entry`'s scripts into the servers of the pools and clusters it holds.
    pub(crate) async fn load(&mut self, entry: &PluginEntry) -> Result<(), StartupError> {
        let scripts = entry.registration.scripts;
        if scripts.is_empty() {
            return Ok(());
        }
        for injected in host::injected(entry.registration, &*entry.any) {
            let targets = match injected.handle {
                InjectedHandle::Pool(pool) => vec![Target {
                    shown: format!("pool `{}`", pool.name()),
                    pool,
                }],
                InjectedHandle::Cluster(cluster) => match masters(&cluster).await {
                    Ok(masters) => masters,
                    Err(why) => {
                        tracing::warn!(
                            plugin = entry.registration.name,
                            scope = %entry.scope,
                            cluster = cluster.name(),
                            "could not list the cluster's masters to load the plugin's scripts \
                             ({why}); each script is loaded on its first use instead"
                        );
                        continue;
                    }
                },
            };
            for target in &targets {
                for script in scripts {
                    self.load_one(entry, script, target).await?;
                }
            }
        }
        Ok(())
    }

    async fn load_one(
        &mut self,
        entry: &PluginEntry,
        script: &PluginScript,
        target: &Target,
    ) -> Result<(), StartupError> {
        let server = target.pool.name().to_owned();
        let sha1 = script.script.sha1();
        if self.unreachable.contains(&server) || !self.loaded.insert((server.clone(), sha1)) {
            return Ok(());
        }
        // Once, without the pool's retries: a server that is down costs startup one dial.
        let outcome = target
            .pool
            .query_once::<Value>(&script.script.load_cmd())
            .await;
        match outcome {
            Ok(_) => {
                tracing::debug!(
                    plugin = entry.registration.name,
                    field = script.field,
                    file = script.script.path(),
                    sha1,
                    server = %target.shown,
                    "script loaded"
                );
                Ok(())
            }
            Err(error) if refused(&error) => Err(StartupError::Script {
                plugin: entry.registration.name,
                scope: entry.scope.to_string(),
                field: script.field,
                file: script.script.path(),
                server: target.shown.clone(),
                message: server_message(&error),
            }),
            Err(error) => {
                if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
                    self.unreachable.insert(server);
                }
                tracing::warn!(
                    plugin = entry.registration.name,
                    field = script.field,
                    file = script.script.path(),
                    server = %target.shown,
                    %error,
                    "could not load the script at startup; it is loaded on its first use instead"
                );
                Ok(())
            }
        }
    }
}

/// Whether the server turned the script itself down: `SCRIPT LOAD` answers a plain `ERR` when
/// the Lua does not compile. Other failures (network, `LOADING`, permissions) say nothing
/// about the script.
fn refused(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
}

/// The server's reply as it sent it: `ERR Error compiling script (new function): ...`.
fn server_message(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => error.to_string(),
    }
}

/// A handle to every master of `cluster`: the masters serving the slot ranges `CLUSTER SLOTS`
/// lists, each reached through the cluster's own node handle for a key in its first range.
async fn masters(cluster: &RedisCluster) -> Result<Vec<Target>, String> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut cluster.clone())
        .await
        .map_err(|error| error.to_string())?;
    let mut masters: Vec<Target> = Vec::new();
    for first in first_slots(&reply)? {
        let Some(key) = key_in_slot(first) else {
            continue;
        };
        let node = cluster
            .node_for_key(key.as_bytes())
            .await
            .map_err(|error| error.to_string())?;
        if let Some(node) = node
            && !masters.iter().any(|known| known.pool.same_pool(&node))
        {
            masters.push(Target {
                shown: format!("master `{}` of cluster `{}`", node.name(), cluster.name()),
                pool: node,
            });
        }
    }
    Ok(masters)
}

/// One slot of each master in a `CLUSTER SLOTS` reply (`[[first, last, [ip, port, id, ...],
/// replicas...], ...]`): the first slot of the first range it serves, so that a master serving
/// several ranges is looked up once.
fn first_slots(reply: &Value) -> Result<Vec<u16>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!(
            "CLUSTER SLOTS answered {reply:?}, not a list of ranges"
        ));
    };
    let mut seen: Vec<(&Value, &Value)> = Vec::new();
    let mut slots = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(format!("CLUSTER SLOTS listed {range:?} as a range"));
        };
        let (Some(Value::Int(first)), Some(Value::Array(master))) = (fields.first(), fields.get(2))
        else {
            return Err(format!("CLUSTER SLOTS listed the range {fields:?}"));
        };
        let (Some(ip), Some(port)) = (master.first(), master.get(1)) else {
            return Err(format!("CLUSTER SLOTS listed the master {master:?}"));
        };
        if seen.contains(&(ip, port)) {
            continue;
        }
        seen.push((ip, port));
        slots.push(
            u16::try_from(*first)
                .map_err(|_| format!("CLUSTER SLOTS listed slot {first}, out of range"))?,
        );
    }
    Ok(slots)
}

/// A key that hashes to `slot`. Decimal numbers cover every slot within the first few hundred
/// thousand (each slot is hit about once per 16,384 of them), so the search always ends.
fn key_in_slot(slot: u16) -> Option<String> {
    let target = Slot::new(slot)?;
    (0u32..2_000_000)
        .map(|n| n.to_string())
        .find(|key| Slot::for_key(key) == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_key_for_the_first_and_last_slot() {
        for slot in [0, 1, 5461, 10923, 16383] {
            let key = key_in_slot(slot).expect("a key for every slot");
            assert_eq!(Slot::for_key(&key), Slot::new(slot).unwrap(), "{key}");
        }
        assert_eq!(key_in_slot(16384), None);
    }

    #[test]
    fn reads_one_slot_per_master() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node(7000)]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node(7001),
                node(7004),
            ]),
        ]);
        assert_eq!(first_slots(&reply), Ok(vec![0, 5461]));
        assert!(first_slots(&Value::Nil).is_err());
        assert!(first_slots(&Value::Array(vec![Value::Int(3)])).is_err());
    }
}
