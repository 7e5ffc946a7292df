//! `PluginKit`'s builder against real servers: a cluster, a password, a server given by
//! address, and the gateway config it writes. The kit as plugin authors use it is tested in
//! `examples/kit-demo`.

use bytes::Bytes;
use http::StatusCode;
use redplug::prelude::*;
use redplug_testkit::{Place, PluginKit, RedisCluster as TestCluster, RedisServer};
use serde_json::{Value, json};

/// Remembers the last `x-tag` per path, in a cluster or a pool, and answers the previous one.
#[derive(Plugin)]
#[plugin(name = "tagger")]
struct Tagger {
    #[redis_cluster("shared")]
    cluster: Option<RedisCluster>,
    #[redis_pool("single")]
    pool: Option<RedisPool>,
    #[redis_script("tests/scripts/tag.lua")]
    tag: RedisScript,
}

impl Middleware for Tagger {
    async fn on_request(&self, request: &mut Request) -> Result<Flow, PluginError> {
        let tag = request
            .headers()
            .get("x-tag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let mut call = self.tag.key(request.uri().path());
        call.arg(tag);
        let previous: Option<String> = match (&self.cluster, &self.pool) {
            (Some(cluster), _) => call.invoke(&mut cluster.clone()).await?,
            (None, Some(pool)) => call.invoke(&mut pool.clone()).await?,
            (None, None) => return Err(PluginError::new("no connection configured")),
        };
        let previous = previous.unwrap_or_else(|| "none".to_owned());
        let value = http::HeaderValue::try_from(previous)
            .map_err(|e| PluginError::new("not a header value").with_source(e))?;
        request.headers_mut().insert("x-previous", value);
        Ok(Flow::Continue)
    }
}

fn tagged(path: &str, tag: &str) -> Request {
    http::Request::get(path)
        .header("x-tag", tag)
        .body(Bytes::new())
        .expect("a valid request")
}

/// What the backend saw as `x-previous`.
fn previous(exchange: &redplug_testkit::Exchange) -> String {
    let forwarded = exchange.forwarded.as_ref().expect("reached the backend");
    forwarded.headers()["x-previous"]
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_on_a_cluster_gets_its_script_on_every_master() {
    let cluster = TestCluster::start(3, 0);
    let kit = PluginKit::<Tagger>::builder()
        .cluster("shared", &cluster)
        .start()
        .await
        .unwrap();
    let sha1 = Tagger::SCRIPTS[0].script.sha1();
    for master in cluster.masters() {
        assert!(cluster.node(master).has_script(sha1), "master {master}");
    }
    assert!(kit.cluster("shared").is_some());
    for path in ["/a", "/b", "/c", "/d"] {
        assert_eq!(previous(&kit.request(tagged(path, "one")).await), "none");
        assert_eq!(previous(&kit.request(tagged(path, "two")).await), "one");
    }
    cluster.flush_scripts();
    assert_eq!(previous(&kit.request(tagged("/a", "three")).await), "two");
    kit.shutdown().await;
}

#[tokio::test]
async fn a_password_and_pool_options_reach_the_pool() {
    let server = RedisServer::builder().password("kit-secret").start();
    let kit = PluginKit::<Tagger>::builder()
        .pool_with("single", &server, json!({ "db": 3 }))
        .start()
        .await
        .unwrap();
    assert_eq!(previous(&kit.request(tagged("/x", "one")).await), "none");
    let mut db3 = server.async_conn().await;
    redis::cmd("SELECT")
        .arg(3)
        .exec_async(&mut db3)
        .await
        .unwrap();
    let stored: String = redis::AsyncCommands::get(&mut db3, "/x").await.unwrap();
    assert_eq!(stored, "one");
    kit.shutdown().await;
}

#[tokio::test]
async fn a_server_given_by_address_is_used_as_is() {
    let server = RedisServer::start();
    let kit = PluginKit::<Tagger>::builder()
        .pool_at("single", &server.addr(), json!({}))
        .start()
        .await
        .unwrap();
    assert_eq!(kit.place(), Place::Service);
    assert!(kit.plugin().is_some());
    let exchange = kit.request(tagged("/y", "one")).await;
    assert_eq!(exchange.status(), StatusCode::OK);
    assert_eq!(exchange.response.body(), "ok");
    kit.shutdown().await;
}

#[test]
fn the_config_lists_the_plugin_where_it_runs() {
    let server = RedisServer::start();
    let parse = |json: String| -> Value { serde_json::from_str(&json).expect("valid JSON") };
    let service = parse(
        PluginKit::<Tagger>::builder()
            .pool("single", &server)
            .settings(json!({ "a": 1 }))
            .config_json(),
    );
    assert_eq!(
        service["extra_config"]["plugin/redplug"]["tagger"],
        json!({ "a": 1 })
    );
    assert!(service.get("endpoints").is_none());

    let backend = parse(
        PluginKit::<Tagger>::builder()
            .config(json!({ "a": 1 }))
            .at_backend()
            .settings(json!({ "a": 2 }))
            .config_json(),
    );
    assert_eq!(
        backend["extra_config"]["plugin/redplug"]["tagger"],
        json!({ "a": 1 })
    );
    let listing = &backend["endpoints"][0]["backend"][0]["extra_config"]["plugin/redplug"];
    assert_eq!(
        listing,
        &json!({ "name": ["tagger"], "tagger": { "a": 2 } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_given_by_addresses_is_used_as_is() {
    let cluster = TestCluster::start(3, 0);
    let seed = cluster.addrs()[0].clone();
    let kit = PluginKit::<Tagger>::builder()
        .cluster_at("shared", &[seed.as_str()], json!({ "max_redirects": 5 }))
        .start()
        .await
        .unwrap();
    assert_eq!(previous(&kit.request(tagged("/z", "one")).await), "none");
    assert_eq!(previous(&kit.request(tagged("/z", "two")).await), "one");
    kit.shutdown().await;
}
