//! What `#[derive(Plugin)]` produces, checked at run time without Redis: the plugin's name and
//! needs, its `inventory` registration, and building it from resolved connections and config.
//!
//! Pools here wrap a stub backend that refuses every command: these tests only check which
//! handle lands in which field, never talk to a server.

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redplug::NeedKind;
use redplug::host::{self, BuildContext, PoolBackend, Resolved};
use redplug::prelude::*;
use redplug::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use redplug::{BuildError, Need, PoolStatus, PooledConnection, Registration};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct CounterConfig {
    limit: u64,
}

impl Default for CounterConfig {
    fn default() -> Self {
        Self { limit: 100 }
    }
}

const COUNTER_LINE: u32 = line!() + 1;
#[derive(Plugin)]
#[plugin(name = "counter")]
struct Counter {
    #[redis_pool("cache")]
    cache: Option<RedisPool>,
    #[redis_cluster("shared_cluster")]
    cluster: Option<RedisCluster>,
    #[redis_selectors]
    selectors: RedisSelectors,
    #[plugin(config)]
    config: CounterConfig,
    hits: AtomicU64,
}

impl Middleware for Counter {}

/// No `Default`: a missing config is an error, not a silent default.
#[derive(Debug, Deserialize)]
struct RateLimiterConfig {
    limit: u64,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Rule {
    key: String,
}

#[derive(Debug, Plugin)]
struct RateLimiter {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
    #[plugin(config)]
    config: RateLimiterConfig,
}

impl Middleware for RateLimiter {}

#[derive(Plugin)]
struct TupleCache(#[redis_pool("cache")] Option<RedisPool>, u32);

impl Middleware for TupleCache {}

#[derive(Plugin)]
struct Keywords {
    #[redis_pool("type")]
    r#type: Option<RedisPool>,
}

impl Middleware for Keywords {}

/// Optionality comes from the type, so an alias of `Option<RedisPool>` is optional too; and
/// several fields may take the selectors.
type MaybePool = Option<RedisPool>;

#[derive(Plugin)]
struct Aliased {
    #[redis_pool("maybe")]
    pool: MaybePool,
    #[redis_selectors]
    reads: RedisSelectors,
    #[redis_selectors]
    writes: RedisSelectors,
}

impl Middleware for Aliased {}

#[derive(Plugin)]
struct Nothing;

impl Middleware for Nothing {}

#[test]
fn name_is_the_attribute_or_the_type_name_in_snake_case() {
    assert_eq!(Counter::NAME, "counter");
    assert_eq!(RateLimiter::NAME, "rate_limiter");
    assert_eq!(TupleCache::NAME, "tuple_cache");
    assert_eq!(Keywords::NAME, "keywords");
    assert_eq!(Nothing::NAME, "nothing");
}

#[test]
fn needs_list_pools_and_clusters_in_field_order() {
    assert_eq!(
        Counter::NEEDS,
        [
            Need {
                field: "cache",
                kind: NeedKind::Pool,
                name: "cache",
                optional: true,
            },
            Need {
                field: "cluster",
                kind: NeedKind::Cluster,
                name: "shared_cluster",
                optional: true,
            },
        ]
    );
    assert_eq!(
        RateLimiter::NEEDS,
        [Need {
            field: "redis",
            kind: NeedKind::Pool,
            name: "redis_at_eight",
            optional: false,
        }]
    );
    assert_eq!(TupleCache::NEEDS[0].field, "0");
    assert_eq!(Keywords::NEEDS[0].field, "type");
    assert!(Nothing::NEEDS.is_empty());
}

#[test]
fn every_derived_plugin_is_registered_with_its_type_and_location() {
    let counter = registration::<Counter>();
    assert_eq!(counter.name, "counter");
    assert_eq!(counter.type_name, "derive::Counter");
    assert_eq!(counter.location.file, file!());
    assert_eq!(counter.location.line, COUNTER_LINE);
    assert_eq!(counter.needs, Counter::NEEDS);

    assert_eq!(
        registration::<RateLimiter>().type_name,
        "derive::RateLimiter"
    );
    assert_eq!(registration::<Keywords>().name, "keywords");
    assert!(registration::<Nothing>().needs.is_empty());
}

#[test]
fn builds_with_config_and_absent_optional_connections() {
    let selectors = RedisSelectors::default();
    let config = serde_json::json!({ "limit": 7 });
    let mut context = BuildContext::new(
        Counter::NAME,
        Counter::NEEDS,
        vec![Resolved::Pool(None), Resolved::Cluster(None)],
        &selectors,
        Some(&config),
    );
    let counter = Counter::build(&mut context).expect("counter builds");
    assert!(counter.cache.is_none());
    assert!(counter.cluster.is_none());
    assert_eq!(counter.config, CounterConfig { limit: 7 });
    assert_eq!(counter.hits.load(Ordering::Relaxed), 0);
}

#[test]
fn missing_config_falls_back_to_default_when_the_type_has_one() {
    let selectors = RedisSelectors::default();
    let mut context = BuildContext::new(
        Counter::NAME,
        Counter::NEEDS,
        vec![Resolved::Pool(None), Resolved::Cluster(None)],
        &selectors,
        None,
    );
    let counter = Counter::build(&mut context).expect("counter builds");
    assert_eq!(counter.config, CounterConfig { limit: 100 });
}

#[test]
fn injects_the_resolved_pool_and_the_selectors() {
    let pool = stub_pool("cache");
    let selectors = host::selectors([pool.clone()], []);
    let mut context = BuildContext::new(
        Counter::NAME,
        Counter::NEEDS,
        vec![Resolved::Pool(Some(pool.clone())), Resolved::Cluster(None)],
        &selectors,
        None,
    );
    let counter = Counter::build(&mut context).expect("counter builds");
    assert!(counter.cache.as_ref().is_some_and(|c| c.same_pool(&pool)));
    let looked_up = counter
        .selectors
        .pool("cache")
        .expect("selectors see the pool");
    assert!(looked_up.same_pool(&pool));

    let limiter_pool = stub_pool("redis_at_eight");
    let config = serde_json::json!({ "limit": 10, "rules": [{ "key": "ip" }] });
    let mut context = BuildContext::new(
        RateLimiter::NAME,
        RateLimiter::NEEDS,
        vec![Resolved::Pool(Some(limiter_pool.clone()))],
        &selectors,
        Some(&config),
    );
    let limiter = RateLimiter::build(&mut context).expect("rate limiter builds");
    assert!(limiter.redis.same_pool(&limiter_pool));
    assert_eq!(limiter.config.limit, 10);
    assert_eq!(limiter.config.rules.len(), 1);
}

#[test]
fn a_bad_config_names_the_path_inside_it() {
    let error = build_rate_limiter(Some(serde_json::json!({ "limit": "ten" }))).unwrap_err();
    let BuildError::Config {
        plugin,
        path,
        message,
        ..
    } = &error
    else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(plugin, "rate_limiter");
    assert_eq!(path, ".limit");
    assert!(message.contains("invalid type"), "{message}");
    assert!(
        error
            .to_string()
            .contains(r#"extra_config["plugin/redplug"]["rate_limiter"].limit"#),
        "{error}"
    );

    let nested = serde_json::json!({ "limit": 1, "rules": [{ "key": "ip" }, { "key": 5 }] });
    match build_rate_limiter(Some(nested)).unwrap_err() {
        BuildError::Config { path, .. } => assert_eq!(path, ".rules[1].key"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_missing_config_without_default_is_an_error() {
    match build_rate_limiter(None).unwrap_err() {
        BuildError::MissingConfig {
            plugin, type_name, ..
        } => {
            assert_eq!(plugin, "rate_limiter");
            assert_eq!(type_name, "RateLimiterConfig");
        }
        other => panic!("expected a missing-config error, got {other:?}"),
    }
}

#[test]
fn an_unresolved_required_pool_names_the_field() {
    let selectors = RedisSelectors::default();
    let config = serde_json::json!({ "limit": 1 });
    let mut context = BuildContext::new(
        RateLimiter::NAME,
        RateLimiter::NEEDS,
        vec![Resolved::Pool(None)],
        &selectors,
        Some(&config),
    );
    let error = RateLimiter::build(&mut context).expect_err("no pool, no plugin");
    assert_eq!(
        error.to_string(),
        "plugin `rate_limiter`: field `redis` needs pool `redis_at_eight`, which was not resolved"
    );
}

#[test]
fn tuple_unit_aliased_and_raw_identifier_structs_build() {
    let selectors = RedisSelectors::default();
    let mut context = BuildContext::new(
        TupleCache::NAME,
        TupleCache::NEEDS,
        vec![Resolved::Pool(None)],
        &selectors,
        None,
    );
    let cache = TupleCache::build(&mut context).expect("tuple struct builds");
    assert!(cache.0.is_none());
    assert_eq!(cache.1, 0);

    let mut context = BuildContext::new(
        Keywords::NAME,
        Keywords::NEEDS,
        vec![Resolved::Pool(None)],
        &selectors,
        None,
    );
    let keywords = Keywords::build(&mut context).expect("raw field names build");
    assert!(keywords.r#type.is_none());

    assert!(Aliased::NEEDS[0].optional);
    let pool = stub_pool("maybe");
    let selectors = host::selectors([pool.clone()], []);
    let mut context = BuildContext::new(
        Aliased::NAME,
        Aliased::NEEDS,
        vec![Resolved::Pool(Some(pool.clone()))],
        &selectors,
        None,
    );
    let aliased = Aliased::build(&mut context).expect("aliased builds");
    assert!(aliased.pool.is_some_and(|p| p.same_pool(&pool)));
    assert!(aliased.reads.pool("maybe").is_some());
    assert!(aliased.writes.pool("maybe").is_some());

    let mut context = BuildContext::new(Nothing::NAME, &[], vec![], &selectors, None);
    assert!(Nothing::build(&mut context).is_ok());
}

#[test]
fn the_registration_builds_the_plugin_behind_a_pointer() {
    let selectors = RedisSelectors::default();
    let registration = registration::<Counter>();
    let mut context = BuildContext::new(
        registration.name,
        registration.needs,
        vec![Resolved::Pool(None), Resolved::Cluster(None)],
        &selectors,
        None,
    );
    let built = host::build(registration, &mut context).expect("counter builds");
    let counter = built.any.downcast::<Counter>().expect("a Counter");
    counter.hits.fetch_add(1, Ordering::Relaxed);
    assert_eq!(counter.hits.load(Ordering::Relaxed), 1);
}

fn registration<T: 'static>() -> &'static Registration {
    let id = TypeId::of::<T>();
    Registration::all()
        .find(|registration| registration.type_id() == id)
        .unwrap_or_else(|| panic!("{} is not registered", std::any::type_name::<T>()))
}

fn build_rate_limiter(config: Option<serde_json::Value>) -> Result<RateLimiter, BuildError> {
    let selectors = RedisSelectors::default();
    let mut context = BuildContext::new(
        RateLimiter::NAME,
        RateLimiter::NEEDS,
        vec![Resolved::Pool(Some(stub_pool("redis_at_eight")))],
        &selectors,
        config.as_ref(),
    );
    RateLimiter::build(&mut context)
}

fn stub_pool(name: &str) -> RedisPool {
    host::pool(Arc::new(StubPool {
        name: name.to_owned(),
    }))
}

/// A pool handle with no server behind it; the derive only moves handles around.
struct StubPool {
    name: String,
}

impl PoolBackend for StubPool {
    fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> i64 {
        0
    }

    fn send<'a>(&'a self, _: &'a Cmd) -> RedisFuture<'a, Value> {
        unreachable!("the derive tests never send commands")
    }

    fn send_once<'a>(&'a self, _: &'a Cmd) -> RedisFuture<'a, Value> {
        unreachable!("the derive tests never send commands")
    }

    fn send_pipeline<'a>(
        &'a self,
        _: &'a Pipeline,
        _: usize,
        _: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        unreachable!("the derive tests never send commands")
    }

    fn checkout(&self) -> futures_util::future::BoxFuture<'_, RedisResult<PooledConnection>> {
        unreachable!("the derive tests never check out connections")
    }

    fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            max_size: 0,
            size: 0,
            idle: 0,
            in_use: 0,
            waiting: 0,
        }
    }
}

/// A plugin with a Lua script next to a pool and an optional cluster.
#[derive(Plugin)]
struct Scripted {
    #[redis_pool("cache")]
    redis: RedisPool,
    #[redis_cluster("shared_cluster")]
    cluster: Option<RedisCluster>,
    #[redis_script("scripts/spend.lua")]
    spend: RedisScript,
}

impl Middleware for Scripted {}

#[test]
fn scripts_are_read_at_compile_time_with_their_sha1() {
    let source = include_str!("../scripts/spend.lua");
    assert_eq!(Scripted::SCRIPTS.len(), 1);
    let script = Scripted::SCRIPTS[0];
    assert_eq!(script.field, "spend");
    assert_eq!(script.script.path(), "scripts/spend.lua");
    assert_eq!(script.script.source(), source);
    // `sha1sum scripts/spend.lua`
    assert_eq!(
        script.script.sha1(),
        "30b33f12af679a848a2e4af6e259fab997f3a42b"
    );
    assert_eq!(registration::<Scripted>().scripts.len(), 1);
    assert!(Counter::SCRIPTS.is_empty());
}

#[test]
fn the_host_sees_the_handles_a_built_plugin_holds() {
    let pool = stub_pool("cache");
    let selectors = host::selectors([pool.clone()], []);
    let mut context = BuildContext::new(
        Scripted::NAME,
        Scripted::NEEDS,
        vec![Resolved::Pool(Some(pool)), Resolved::Cluster(None)],
        &selectors,
        None,
    );
    let scripted = registration::<Scripted>();
    let built = host::build(scripted, &mut context).expect("builds");
    let injected = host::injected(scripted, &*built.any);
    assert_eq!(injected.len(), 1, "the cluster is None: {injected:?}");
    assert_eq!(injected[0].field, "redis");
    assert!(
        matches!(&injected[0].handle, host::InjectedHandle::Pool(p) if p.name() == "cache"),
        "{injected:?}"
    );
    // Another type's registration finds nothing in this plugin.
    assert!(host::injected(registration::<Counter>(), &*built.any).is_empty());
    let scripted = built.any.downcast::<Scripted>().expect("a Scripted");
    assert_eq!(scripted.spend.sha1(), Scripted::SCRIPTS[0].script.sha1());
}
