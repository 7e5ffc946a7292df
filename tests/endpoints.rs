//! Plugins per endpoint, against real Redis: the same plugin listed at two endpoints with its
//! own settings at each over one pool, what backend-scope hooks see, the order of `init` and
//! `shutdown`, an `init` that fails, a plugin that panics, and the startup errors of scopes.
//!
//! The `journal` plugin writes every hook it runs to a Redis list, tagged with the settings of
//! its place, so that each test reads from the server what ran where and in which order.

use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;
use redplug::prelude::*;
use redplug_example_plugins::RateLimit;
use redplug_runtime::{Endpoint, Runtime, StartupError};
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

mod support;

use support::{Logs, client_list, log_subscriber};

redplug::link!(redplug_example_plugins);

/// Records each hook it runs in the list `journal`, as `<tag> <hook> <what it saw>`.
#[derive(Plugin)]
#[plugin(name = "journal")]
struct Journal {
    #[redis_pool("journal")]
    redis: RedisPool,
    #[plugin(config)]
    config: JournalConfig,
}

#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct JournalConfig {
    tag: String,
    /// `init` fails after recording itself.
    fail_init: bool,
    /// `on_request` panics.
    panic: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            tag: "service".into(),
            fail_init: false,
            panic: false,
        }
    }
}

impl Journal {
    async fn record(&self, entry: String) -> Result<(), PluginError> {
        let _: i64 = self.redis.clone().rpush("journal", entry).await?;
        Ok(())
    }
}

impl Middleware for Journal {
    // It records and rewrites response bodies.
    const BODIES: Bodies = Bodies::RESPONSE;

    async fn init(&self) -> Result<(), PluginError> {
        self.record(format!("{} init", self.config.tag)).await?;
        if self.config.fail_init {
            return Err(PluginError::new("the key space is not ready"));
        }
        Ok(())
    }

    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        if self.config.panic {
            panic!("journal was told to panic");
        }
        let via = header(request.headers(), "x-via");
        self.record(format!(
            "{} request {} {} via={via}",
            self.config.tag,
            request.method(),
            request.uri()
        ))
        .await?;
        let via = if via.is_empty() {
            self.config.tag.clone()
        } else {
            format!("{via},{}", self.config.tag)
        };
        request.headers_mut().insert("x-via", header_value(&via)?);
        Ok(Flow::Continue)
    }

    async fn on_response(&self, response: &mut Response) -> Result<(), PluginError> {
        let body = String::from_utf8_lossy(response.body()).into_owned();
        self.record(format!(
            "{} response {} body={body}",
            self.config.tag,
            response.status().as_u16()
        ))
        .await?;
        *response.body_mut() = Bytes::from(format!("{body}+{}", self.config.tag));
        Ok(())
    }

    async fn shutdown(&self) {
        // The connections are still open: record it, as a plugin would flush its buffers.
        if let Err(error) = self.record(format!("{} shutdown", self.config.tag)).await {
            panic!("shutdown could not reach Redis: {error}");
        }
    }
}

/// Opens and closes with the runtime, at the service level (no endpoint lists it).
#[derive(Plugin)]
#[plugin(name = "warden")]
struct Warden {
    #[redis_pool("journal")]
    redis: RedisPool,
}

impl Middleware for Warden {
    async fn init(&self) -> Result<(), PluginError> {
        let _: i64 = self.redis.clone().rpush("journal", "warden init").await?;
        Ok(())
    }

    async fn shutdown(&self) {
        let pushed: Result<i64, _> = self.redis.clone().rpush("journal", "warden shutdown").await;
        if let Err(error) = pushed {
            panic!("shutdown could not reach Redis: {error}");
        }
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn header_value(text: &str) -> Result<http::HeaderValue, PluginError> {
    text.parse()
        .map_err(|_| PluginError::new(format!("{text:?} is no header value")))
}

/// A gateway config: `pools` (name → server) and `endpoints`.
fn gateway(pools: &[(&str, &RedisServer)], endpoints: Value) -> String {
    let pools: Vec<Value> = pools
        .iter()
        .map(|(name, server)| json!({ "name": name, "address": server.addr() }))
        .collect();
    json!({
        "host": ["http://backend.internal"],
        "extra_config": { "redis": { "connection_pools": pools } },
        "endpoints": endpoints,
    })
    .to_string()
}

/// One endpoint at `path` with one backend, and `plugins` as the endpoint's chain.
fn endpoint(path: &str, plugins: Value) -> Value {
    json!({
        "endpoint": path,
        "backend": [{ "url_pattern": path }],
        "extra_config": { "plugin/redplug": plugins },
    })
}

async fn start(plugins: &[&str], json: &str) -> Result<Runtime, StartupError> {
    Runtime::builder()
        .only_plugins(plugins.iter().copied())
        .start_json(json)
        .await
}

fn find(runtime: &Runtime, path: &str) -> Endpoint {
    runtime
        .endpoints()
        .iter()
        .find(|endpoint| endpoint.path() == path)
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {path}"))
}

/// Sends a request for `path` from client `client` through the endpoint's chain to a backend
/// that answers `200 ok`; the status the client gets.
async fn call(endpoint: &Endpoint, client: &str) -> u16 {
    let request = http::Request::builder()
        .uri(endpoint.path())
        .header("x-client-id", client)
        .body(Bytes::new())
        .expect("a valid request");
    let response = endpoint
        .chain()
        .run(request, |_| async {
            http::Response::new(Bytes::from("ok"))
        })
        .await;
    response.status().as_u16()
}

async fn journal(server: &RedisServer) -> Vec<String> {
    let mut admin = server.async_conn().await;
    admin
        .lrange("journal", 0, -1)
        .await
        .expect("LRANGE journal")
}

#[tokio::test]
async fn one_plugin_at_two_endpoints_keeps_each_place_s_settings_over_one_pool() {
    let server = RedisServer::start();
    let json = gateway(
        &[("ratelimit_counters", &server)],
        json!([
            endpoint(
                "/strict",
                json!({"name": ["rate_limit"],
                "rate_limit": {"limit": 2, "window": "1m", "key_prefix": "strict"}})
            ),
            endpoint(
                "/lenient",
                json!({"name": ["rate_limit"],
                "rate_limit": {"limit": 5, "window": "1m", "key_prefix": "lenient"}})
            ),
        ]),
    );
    let runtime = start(&["rate_limit"], &json).await.unwrap();

    let mut allowed = Vec::new();
    for path in ["/strict", "/lenient"] {
        let endpoint = &find(&runtime, path);
        assert_eq!(endpoint.chain().names(), ["rate_limit"]);
        assert_eq!(endpoint.chain().scope(), format!("GET {path}"));
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(call(endpoint, "alice").await);
        }
        println!("{path}: {statuses:?}");
        allowed.push(statuses.iter().filter(|status| **status == 200).count());
        assert!(
            statuses[..allowed[allowed.len() - 1]]
                .iter()
                .all(|s| *s == 200)
        );
        assert!(
            statuses[allowed[allowed.len() - 1]..]
                .iter()
                .all(|s| *s == 429)
        );
    }
    assert_eq!(
        allowed,
        [2, 5],
        "each endpoint keeps the limit its place gives"
    );

    // Two instances, one pool: the server sees the pool's single shared connection.
    let clients = client_list(&server).await;
    println!("{} connection(s): {clients:#?}", clients.len());
    assert_eq!(clients.len(), 1, "{clients:#?}");
    // A listed plugin has no service-level instance to hand out by type.
    assert!(runtime.get::<RateLimit>().is_none());
    runtime.shutdown().await;
}

#[tokio::test]
async fn backend_hooks_see_their_own_backend_s_request_and_response() {
    let server = RedisServer::start();
    let json = gateway(
        &[("journal", &server)],
        json!([{
            "endpoint": "/v1/fan",
            "method": "POST",
            "extra_config": {"plugin/redplug": {"name": ["journal"], "journal": {"tag": "edge"}}},
            "backend": [
                {"host": ["http://users.internal"], "url_pattern": "/users", "method": "GET",
                 "extra_config": {"plugin/redplug": {"name": ["journal"], "journal": {"tag": "users"}}}},
                {"url_pattern": "/orders",
                 "extra_config": {"plugin/redplug": {"name": ["journal"], "journal": {"tag": "orders"}}}},
                {"url_pattern": "/plain"}
            ]
        }]),
    );
    let runtime = start(&["journal"], &json).await.unwrap();
    let endpoint = &runtime.endpoints()[0];
    let hosts: Vec<&[String]> = endpoint.backends().iter().map(|b| b.hosts()).collect();
    assert_eq!(
        hosts,
        [
            &["http://users.internal".to_owned()][..],
            &["http://backend.internal".to_owned()][..],
            &["http://backend.internal".to_owned()][..],
        ],
        "a backend without `host` takes the top-level one"
    );
    assert_eq!(endpoint.backends()[0].method(), http::Method::GET);
    assert_eq!(endpoint.backends()[1].method(), http::Method::POST);
    assert!(endpoint.backends()[2].chain().is_empty());

    // What a host does: the endpoint's chain around every backend call, each call through its
    // backend's chain, the backends' bodies merged into the client's.
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/fan")
        .body(Bytes::new())
        .unwrap();
    let response = endpoint
        .chain()
        .run(request, |request| async move {
            let mut bodies = Vec::new();
            for backend in endpoint.backends() {
                let uri = format!("{}{}", backend.hosts()[0], backend.url_pattern());
                let mut call = http::Request::builder()
                    .method(backend.method())
                    .uri(&uri)
                    .body(Bytes::new())
                    .unwrap();
                *call.headers_mut() = request.headers().clone();
                let answer = backend
                    .chain()
                    .run(call, |call| async move {
                        let via = header(call.headers(), "x-via");
                        http::Response::new(Bytes::from(format!("{}[{via}]", call.uri().path())))
                    })
                    .await;
                bodies.push(String::from_utf8_lossy(answer.body()).into_owned());
            }
            http::Response::new(Bytes::from(bodies.join(" ")))
        })
        .await;

    let body = String::from_utf8_lossy(response.body()).into_owned();
    println!("client got: {body}");
    assert_eq!(
        body,
        "/users[edge,users]+users /orders[edge,orders]+orders /plain[edge]+edge"
    );
    let journal = journal(&server).await;
    println!("{journal:#?}");
    assert_eq!(
        journal,
        [
            "edge init",
            "users init",
            "orders init",
            "edge request POST /v1/fan via=",
            "users request GET http://users.internal/users via=edge",
            "users response 200 body=/users[edge,users]",
            "orders request POST http://backend.internal/orders via=edge",
            "orders response 200 body=/orders[edge,orders]",
            "edge response 200 body=/users[edge,users]+users /orders[edge,orders]+orders /plain[edge]",
        ]
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn init_runs_in_build_order_and_shutdown_in_reverse_once() {
    let server = RedisServer::start();
    let json = gateway(
        &[("journal", &server)],
        json!([
            {"endpoint": "/a",
             "extra_config": {"plugin/redplug": {"name": ["journal"], "journal": {"tag": "a"}}},
             "backend": [{"url_pattern": "/a",
                 "extra_config": {"plugin/redplug": {"name": ["journal"], "journal": {"tag": "a0"}}}}]},
            endpoint("/b", json!({"name": ["journal"], "journal": {"tag": "b"}})),
        ]),
    );
    let runtime = start(&["journal", "warden"], &json).await.unwrap();
    assert_eq!(
        journal(&server).await,
        ["warden init", "a init", "a0 init", "b init"],
        "the service level first, then each endpoint and its backends in file order"
    );
    runtime.shutdown().await;
    runtime.shutdown().await;
    let journal = journal(&server).await;
    println!("{journal:#?}");
    assert_eq!(
        journal[4..],
        ["b shutdown", "a0 shutdown", "a shutdown", "warden shutdown"],
        "shutdown runs once, in reverse, before the connections close"
    );
    let pool = runtime.selectors().pool("journal").unwrap();
    let after: Result<i64, _> = pool.clone().rpush("journal", "late").await;
    assert!(after.is_err(), "the pool is closed after the hooks ran");
}

#[tokio::test]
async fn an_init_that_fails_stops_startup_and_shuts_down_what_started() {
    let server = RedisServer::start();
    let json = gateway(
        &[("journal", &server)],
        json!([
            endpoint("/a", json!({"name": ["journal"], "journal": {"tag": "a"}})),
            endpoint(
                "/b",
                json!({"name": ["journal"], "journal": {"tag": "b", "fail_init": true}})
            ),
            endpoint("/c", json!({"name": ["journal"], "journal": {"tag": "c"}})),
        ]),
    );
    let error = start(&["journal"], &json).await.err().expect("init fails");
    let message = error.to_string();
    println!("{message}");
    assert!(
        matches!(&error, StartupError::Init { plugin, scope, .. }
            if plugin == "journal" && scope == "GET /b"),
        "{error:?}"
    );
    assert_eq!(
        message,
        "plugin `journal` (GET /b) failed to initialize: the key space is not ready"
    );
    assert_eq!(
        journal(&server).await,
        ["a init", "b init", "a shutdown"],
        "what initialized is shut down; what came after never starts"
    );
    // And the pool's connection is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !client_list(&server).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            client_list(&server).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_plugin_that_panics_fails_its_request_with_its_name_and_place() {
    let server = RedisServer::start();
    let json = gateway(
        &[("journal", &server)],
        json!([
            endpoint(
                "/boom",
                json!({"name": ["journal"], "journal": {"tag": "boom", "panic": true}})
            ),
            endpoint(
                "/fine",
                json!({"name": ["journal"], "journal": {"tag": "fine"}})
            ),
        ]),
    );
    let runtime = start(&["journal"], &json).await.unwrap();
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(log_subscriber(&logs, tracing::Level::ERROR));

    assert_eq!(call(&find(&runtime, "/boom"), "alice").await, 500);
    assert_eq!(call(&find(&runtime, "/fine"), "alice").await, 200);
    assert_eq!(call(&find(&runtime, "/boom"), "alice").await, 500);
    assert_eq!(call(&find(&runtime, "/fine"), "alice").await, 200);

    let logs = logs.text();
    println!("{logs}");
    let line = logs
        .lines()
        .find(|line| line.contains("plugin panicked"))
        .unwrap_or_else(|| panic!("no log line for the panic in:\n{logs}"));
    assert!(
        line.contains("plugin=\"journal\"")
            && line.contains("scope=\"GET /boom\"")
            && line.contains("journal was told to panic"),
        "{line}"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn every_problem_of_every_scope_is_reported_at_once_with_its_path() {
    let server = RedisServer::start();
    let json = gateway(
        &[("journal", &server), ("ratelimit_counters", &server)],
        json!([
            endpoint("/a", json!({"name": ["jurnal"]})),
            {"endpoint": "/b", "backend": [{"url_pattern": "/b",
                "extra_config": {"plugin/redplug": {"name": ["journal", "rate_limit"],
                    "journal": {"tag": 5}, "rate_limit": {"limit": -1}}}}]},
            endpoint("/c", json!({"name": ["nothing_like_it"]})),
        ]),
    );
    let error = start(&["journal", "rate_limit"], &json)
        .await
        .err()
        .expect("the scopes are wrong");
    println!("{error}");
    let StartupError::Config(errors) = &error else {
        panic!("expected config errors, got {error:?}");
    };
    let problems: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    let ns = r#"extra_config["plugin/redplug"]"#;
    assert_eq!(
        problems,
        [
            (
                format!("endpoints[0].{ns}.name[0]").as_str(),
                "names no registered plugin; did you mean `journal`?"
            ),
            (
                format!("endpoints[2].{ns}.name[0]").as_str(),
                "names no registered plugin; the plugins linked into this binary are `journal`, \
                 `rate_limit`"
            ),
            (
                format!("endpoints[1].backend[0].{ns}.journal.tag").as_str(),
                "is not a valid config for plugin `journal`: invalid type: integer `5`, \
                 expected a string"
            ),
            (
                format!("endpoints[1].backend[0].{ns}.rate_limit.limit").as_str(),
                "is not a valid config for plugin `rate_limit`: invalid value: integer `-1`, \
                 expected u64"
            ),
        ]
    );
    // Nothing connected: the problems are found before any pool dials.
    assert!(client_list(&server).await.is_empty());
}
