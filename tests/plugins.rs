//! The registry walk end to end: derived plugins are found through `inventory`, their names
//! resolved once against the config, and their connections injected, against real Redis.
//!
//! This binary registers two plugins with the same name on purpose, so every runtime here is
//! started with an explicit plugin list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::AsyncCommands;
use redplug::prelude::*;
use redplug::{NeedKind, Registration};
use redplug_runtime::Pipeline;
use redplug_runtime::{Runtime, StartupError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

// A plugin in another workspace crate, which this file never names otherwise.
redplug::link!(redplug_example_plugins);

#[derive(Plugin)]
#[plugin(name = "hits")]
struct Hits {
    #[redis_pool("redis_at_eight")]
    redis: RedisPool,
    #[redis_pool("sessions")]
    sessions: Option<RedisPool>,
    #[redis_selectors]
    selectors: RedisSelectors,
    #[plugin(config)]
    config: HitsConfig,
    served: AtomicU64,
}

#[derive(serde::Deserialize)]
struct HitsConfig {
    prefix: String,
    #[serde(default)]
    step: i64,
}

impl Default for HitsConfig {
    fn default() -> Self {
        Self {
            prefix: "hits".into(),
            step: 1,
        }
    }
}

impl Middleware for Hits {
    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        self.served.fetch_add(1, Ordering::Relaxed);
        let total: i64 = self
            .redis
            .clone()
            .incr(format!("{}:total", self.config.prefix), self.config.step)
            .await?;
        response.headers_mut().insert(
            "x-hits",
            total
                .to_string()
                .parse()
                .map_err(|_| PluginError::new("header"))?,
        );
        Ok(())
    }
}

/// Asks for names that the tests leave unconfigured.
#[derive(Plugin)]
#[plugin(name = "needy")]
#[allow(dead_code)] // never built: its names are missing on purpose
struct Needy {
    #[redis_pool("redis_at_eigth")]
    typo: RedisPool,
    #[redis_pool("shared_cluster")]
    wrong_kind: RedisPool,
    #[redis_cluster("nowhere")]
    cluster: RedisCluster,
}

impl Middleware for Needy {}

mod first {
    use redplug::prelude::*;

    #[derive(Plugin)]
    #[plugin(name = "twin")]
    pub struct Twin;

    impl Middleware for Twin {}
}

mod second {
    use redplug::prelude::*;

    #[derive(Plugin)]
    #[plugin(name = "twin")]
    pub struct Twin;

    impl Middleware for Twin {}
}

fn config(server: &RedisServer, extra: Value) -> String {
    let mut config = json!({
        "version": 3,
        "endpoints": [{ "endpoint": "/ignored" }],
        "extra_config": {
            "redis": {
                "connection_pools": [
                    { "name": "redis_at_eight", "address": server.addr(), "db": 8 },
                    { "name": "redis_at_seven", "address": server.addr(), "db": 7 }
                ]
            }
        }
    });
    if let (Some(target), Value::Object(extra)) = (config["extra_config"].as_object_mut(), extra) {
        target.extend(extra);
    }
    config.to_string()
}

async fn start(names: &[&str], json: &str) -> Result<Runtime, StartupError> {
    Runtime::builder()
        .only_plugins(names.iter().copied())
        .start_json(json)
        .await
}

fn response() -> Response {
    Response::new(bytes::Bytes::new())
}

#[tokio::test]
async fn fields_are_injected_once_and_requests_never_look_names_up() {
    let server = RedisServer::start();
    let runtime = start(&["hits"], &config(&server, json!({}))).await.unwrap();
    let hits = runtime.get::<Hits>().expect("hits is built");
    assert_eq!(hits.redis.name(), "redis_at_eight");
    assert!(
        hits.sessions.is_none(),
        "an unconfigured optional pool is None"
    );
    assert_eq!(
        hits.selectors.pool_names(),
        ["redis_at_eight", "redis_at_seven"]
    );
    assert_eq!(hits.config.prefix, "hits", "no plugin config: Default");

    let declared = Registration::all()
        .find(|r| r.name == "hits")
        .map(|r| r.needs.len() as u64)
        .unwrap();
    let lookups_after_startup = runtime.selectors().lookups();
    assert_eq!(
        lookups_after_startup, declared,
        "one lookup per declared need"
    );

    let pipeline = Pipeline::new(&runtime, ["hits"]).unwrap();
    for _ in 0..200 {
        let request = Request::new(bytes::Bytes::new());
        let answer = pipeline.run(request, |_| async { response() }).await;
        assert!(answer.headers().contains_key("x-hits"));
    }
    assert_eq!(hits.served.load(Ordering::Relaxed), 200);
    assert_eq!(
        runtime.selectors().lookups(),
        lookups_after_startup,
        "200 requests made no name lookups"
    );
    let mut db8 = server.async_conn().await;
    let () = redis::cmd("SELECT")
        .arg(8)
        .query_async(&mut db8)
        .await
        .unwrap();
    let total: i64 = db8.get("hits:total").await.unwrap();
    assert_eq!(total, 200);
    runtime.shutdown().await;
}

#[tokio::test]
async fn plugin_config_is_deserialized_and_its_errors_name_the_path() {
    let server = RedisServer::start();
    let configured = config(
        &server,
        json!({ "plugin/redplug": { "hits": { "prefix": "edge", "step": 5 } } }),
    );
    let runtime = start(&["hits"], &configured).await.unwrap();
    let hits = runtime.get::<Hits>().unwrap();
    assert_eq!((hits.config.prefix.as_str(), hits.config.step), ("edge", 5));
    runtime.shutdown().await;

    let broken = config(
        &server,
        json!({ "plugin/redplug": { "hits": { "prefix": "edge", "step": "five" } } }),
    );
    let error = start(&["hits"], &broken)
        .await
        .err()
        .expect("a bad plugin config stops startup");
    let message = error.to_string();
    println!("{message}");
    assert!(message.contains("plugin `hits`"), "{message}");
    assert!(message.contains(".step"), "{message}");
}

#[tokio::test]
async fn every_unresolved_name_is_reported_at_once_with_suggestions() {
    let server = RedisServer::start();
    let error = start(
        &["needy", "hits"],
        &config(
            &server,
            json!({ "redis": {
        "connection_pools": [
            { "name": "redis_at_eight", "address": server.addr(), "db": 8 }
        ],
        "clusters": [{ "name": "shared_cluster", "addresses": [server.addr()] }]
    } }),
        ),
    )
    .await;
    // `shared_cluster` points at a server that is no cluster: names are checked before anything
    // connects, so the report is about names, not about that server.
    let Err(StartupError::Unresolved(missing)) = error else {
        panic!("expected unresolved names, got {:?}", error.map(|_| ()));
    };
    let rendered = StartupError::Unresolved(missing.clone()).to_string();
    println!("{rendered}");
    assert_eq!(
        missing.len(),
        3,
        "all three needs of `needy`, and none of `hits`"
    );

    let typo = &missing[0];
    assert_eq!(
        (
            typo.plugin.as_str(),
            typo.field.as_str(),
            typo.name.as_str()
        ),
        ("needy", "typo", "redis_at_eigth")
    );
    assert_eq!(typo.did_you_mean.as_deref(), Some("redis_at_eight"));
    assert!(
        rendered.contains("the closest configured name is `redis_at_eight`"),
        "{rendered}"
    );

    let wrong_kind = &missing[1];
    assert_eq!(wrong_kind.other_kind, Some(NeedKind::Cluster));
    assert!(
        rendered.contains("`shared_cluster` is a cluster")
            && rendered.contains("#[redis_cluster(\"shared_cluster\")]"),
        "{rendered}"
    );
    let cluster = &missing[2];
    assert_eq!(
        (cluster.kind, cluster.configured.clone()),
        (NeedKind::Cluster, vec!["shared_cluster".to_owned()])
    );
}

#[tokio::test]
async fn two_plugins_with_one_name_are_refused_naming_both() {
    let server = RedisServer::start();
    let error = start(&["twin"], &config(&server, json!({})))
        .await
        .err()
        .expect("a name clash");
    let message = error.to_string();
    println!("{message}");
    assert!(
        message.contains("two plugins are named `twin`"),
        "{message}"
    );
    assert!(
        message.contains("first::Twin") && message.contains("second::Twin"),
        "{message}"
    );
    assert!(
        message.contains("tests/plugins.rs:"),
        "source locations: {message}"
    );
}

#[tokio::test]
async fn a_plugin_from_another_workspace_crate_is_collected_and_injected() {
    let registration = Registration::all()
        .find(|r| r.name == "rate_limit")
        .expect("redplug::link! brought in the example plugins crate");
    assert!(
        registration.location.file.contains("plugins"),
        "{}",
        registration.location
    );

    let server = RedisServer::start();
    let json = config(
        &server,
        json!({
            "redis": { "connection_pools": [{ "name": "ratelimit_counters", "address": server.addr() }] },
            "plugin/redplug": { "rate_limit": { "limit": 3, "window": "1m" } }
        }),
    );
    let runtime = start(&["rate_limit"], &json).await.unwrap();
    let pipeline = Pipeline::new(&runtime, ["rate_limit"]).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let request = http::Request::builder()
            .header("x-client-id", "tenant-a")
            .body(bytes::Bytes::new())
            .unwrap();
        let answer = pipeline.run(request, |_| async { response() }).await;
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    runtime.shutdown().await;
}

#[tokio::test]
async fn the_runtime_hands_out_plugins_by_type_and_by_name() {
    let server = RedisServer::start();
    let runtime = start(&["hits"], &config(&server, json!({}))).await.unwrap();
    let by_type: Arc<Hits> = runtime.get::<Hits>().unwrap();
    let by_name = runtime.plugin("hits").expect("by name");
    assert_eq!(by_name.registration().type_name, "plugins::Hits");
    assert!(
        runtime.get::<Needy>().is_none(),
        "not built: not in this runtime's plugin list"
    );
    assert!(runtime.plugin("needy").is_none());
    let unknown = Pipeline::new(&runtime, ["hitz"]).expect_err("unknown plugin");
    assert!(
        unknown.to_string().contains("did you mean `hits`?"),
        "{unknown}"
    );
    drop(by_type);
    runtime.shutdown().await;
}

/// `only_plugins` with a name nothing registered fails instead of running without it.
#[tokio::test]
async fn only_plugins_refuses_a_name_that_is_not_registered() {
    let error = match Runtime::builder()
        .only_plugins(["hits", "hts", "nowhere"])
        .start_json("{}")
        .await
    {
        Ok(_) => panic!("a runtime started without the plugins asked for"),
        Err(error) => error,
    };
    let StartupError::UnknownPlugins(unknown) = &error else {
        panic!("{error}");
    };
    let names: Vec<&str> = unknown.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["hts", "nowhere"]);
    assert_eq!(unknown[0].did_you_mean.as_deref(), Some("hits"));
    assert!(
        error
            .to_string()
            .starts_with("2 plugins asked for are not registered"),
        "{error}"
    );
}
