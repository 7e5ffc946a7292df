//! The clients the rows drive, and the work one task iteration does with each.

use bytes::Bytes;
use fred::interfaces::{ClientLike, KeysInterface};
use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_runtime::Pipeline;

/// Every `INCR` row of a pool increments this one key, like `redis-benchmark -t incr`
/// (`counter:__rand_int__` without `-r` is one literal key).
pub const KEY: &str = "bench:incr";
/// The value of the 16 KiB rows.
pub const LARGE: usize = 16 * 1024;
/// Commands in one pipeline of the pipeline rows.
pub const PIPELINE: usize = 10;

/// What one iteration of a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    /// One `INCR` of [`KEY`] (one key per task on a cluster, so that every master works).
    Incr,
    /// One command on a 16 KiB value: `SET` and `GET` in turn, one key per task.
    Large,
    /// One pipeline of [`PIPELINE`] `INCR`s.
    Pipeline,
}

/// The plugin of row (1): one injected pool, one `INCR` per response.
#[derive(Plugin)]
#[plugin(name = "bench_incr")]
pub struct BenchIncr {
    #[redis_pool("bench")]
    pub redis: RedisPool,
}

impl Middleware for BenchIncr {
    async fn on_response(&self, _response: &mut Response) -> Result<(), PluginError> {
        // Written the way the docs show it: clone the handle, run the command on it.
        let _: i64 = self.redis.clone().incr(KEY, 1).await?;
        Ok(())
    }
}

/// What one task holds; cloned once per task, so per-command work is only the command.
#[derive(Clone)]
pub enum Client {
    Plugin(Pipeline),
    Pool(RedisPool),
    Cluster(RedisCluster),
    Multiplexed(redis::aio::MultiplexedConnection),
    RedisRsCluster(redis::cluster_async::ClusterConnection),
    Fred(fred::clients::Client),
    Deadpool(deadpool_redis::Pool),
}

/// A task's own state: its key and how many iterations it ran.
pub struct Task {
    pub key: String,
    pub iteration: u64,
    pub value: Bytes,
}

impl Client {
    /// One iteration of `work`. Panics with the client's name when the server fails it: a
    /// failing row must not pass for a fast one.
    pub async fn run(&mut self, work: Work, task: &mut Task) {
        task.iteration += 1;
        match work {
            Work::Incr => self.incr(&task.key).await,
            Work::Large if task.iteration % 2 == 1 => self.set(&task.key, &task.value).await,
            Work::Large => self.get(&task.key).await,
            Work::Pipeline => self.pipeline(&task.key).await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Client::Plugin(_) => "the plugin",
            Client::Pool(_) => "the injected RedisPool",
            Client::Cluster(_) => "the injected RedisCluster",
            Client::Multiplexed(_) => "redis-rs' MultiplexedConnection",
            Client::RedisRsCluster(_) => "redis-rs' ClusterConnection",
            Client::Fred(_) => "fred's client",
            Client::Deadpool(_) => "a deadpool-redis connection",
        }
    }

    async fn incr(&mut self, key: &str) {
        let name = self.name();
        let failed = |e: &dyn std::fmt::Display| -> ! { panic!("INCR on {name} failed: {e}") };
        match self {
            Client::Plugin(pipeline) => {
                let request = Request::new(Bytes::new());
                let response = pipeline
                    .run(request, |_| async { Response::new(Bytes::new()) })
                    .await;
                // A failed hook turns into an error response rather than a panic.
                if !response.status().is_success() {
                    failed(&response.status());
                }
            }
            Client::Pool(pool) => {
                let _: i64 = pool.incr(key, 1).await.unwrap_or_else(|e| failed(&e));
            }
            Client::Cluster(cluster) => {
                let _: i64 = cluster.incr(key, 1).await.unwrap_or_else(|e| failed(&e));
            }
            Client::Multiplexed(conn) => {
                let _: i64 = conn.incr(key, 1).await.unwrap_or_else(|e| failed(&e));
            }
            Client::RedisRsCluster(conn) => {
                let _: i64 = conn.incr(key, 1).await.unwrap_or_else(|e| failed(&e));
            }
            Client::Fred(client) => {
                let _: i64 = client.incr(key).await.unwrap_or_else(|e| failed(&e));
            }
            Client::Deadpool(pool) => {
                let mut conn = pool.get().await.unwrap_or_else(|e| failed(&e));
                let _: i64 = conn.incr(key, 1).await.unwrap_or_else(|e| failed(&e));
            }
        }
    }

    async fn set(&mut self, key: &str, value: &Bytes) {
        let name = self.name();
        let failed = |e: &dyn std::fmt::Display| -> ! { panic!("SET on {name} failed: {e}") };
        let bytes: &[u8] = value;
        let result = match self {
            Client::Pool(pool) => pool.set(key, bytes).await,
            Client::Cluster(cluster) => cluster.set(key, bytes).await,
            Client::Multiplexed(conn) => conn.set(key, bytes).await,
            Client::RedisRsCluster(conn) => conn.set(key, bytes).await,
            Client::Fred(client) => {
                let set: Result<(), _> = client.set(key, value.clone(), None, None, false).await;
                set.unwrap_or_else(|e| failed(&e));
                Ok(())
            }
            other => panic!("{} has no 16 KiB row", other.name()),
        };
        let () = result.unwrap_or_else(|e| failed(&e));
    }

    async fn get(&mut self, key: &str) {
        let name = self.name();
        let failed = |e: &dyn std::fmt::Display| -> ! { panic!("GET on {name} failed: {e}") };
        let length = match self {
            Client::Pool(pool) => pool.get::<_, Vec<u8>>(key).await.map(|v| v.len()),
            Client::Cluster(cluster) => cluster.get::<_, Vec<u8>>(key).await.map(|v| v.len()),
            Client::Multiplexed(conn) => conn.get::<_, Vec<u8>>(key).await.map(|v| v.len()),
            Client::RedisRsCluster(conn) => conn.get::<_, Vec<u8>>(key).await.map(|v| v.len()),
            Client::Fred(client) => {
                let value: Result<Bytes, _> = client.get(key).await;
                Ok(value.unwrap_or_else(|e| failed(&e)).len())
            }
            other => panic!("{} has no 16 KiB row", other.name()),
        };
        let length = length.unwrap_or_else(|e| failed(&e));
        assert_eq!(
            length, LARGE,
            "GET on {name} returned a value of another size"
        );
    }

    async fn pipeline(&mut self, key: &str) {
        let name = self.name();
        let failed =
            |e: &dyn std::fmt::Display| -> ! { panic!("a pipeline on {name} failed: {e}") };
        let mut pipe = redis::pipe();
        for _ in 0..PIPELINE {
            pipe.incr(key, 1);
        }
        let replies: Vec<i64> = match self {
            Client::Pool(pool) => pipe.query_async(pool).await,
            Client::Cluster(cluster) => pipe.query_async(cluster).await,
            Client::Multiplexed(conn) => pipe.query_async(conn).await,
            Client::RedisRsCluster(conn) => pipe.query_async(conn).await,
            Client::Fred(client) => {
                let pipeline = client.pipeline();
                for _ in 0..PIPELINE {
                    let queued: Result<(), _> = pipeline.incr(key).await;
                    queued.unwrap_or_else(|e| failed(&e));
                }
                let replies: Result<Vec<i64>, _> = pipeline.all().await;
                Ok(replies.unwrap_or_else(|e| failed(&e)))
            }
            other => panic!("{} has no pipeline row", other.name()),
        }
        .unwrap_or_else(|e| failed(&e));
        assert_eq!(replies.len(), PIPELINE, "a pipeline on {name} lost replies");
    }
}

/// fred's client with its defaults (auto-pipelining on one connection) for `config`.
pub async fn fred(config: fred::types::config::Config) -> fred::clients::Client {
    let client = fred::types::Builder::from_config(config)
        .build()
        .unwrap_or_else(|e| panic!("fred cannot build a client: {e}"));
    let _connection_task = client.init().await.unwrap_or_else(|e| {
        panic!("fred cannot connect: {e}");
    });
    client
}
