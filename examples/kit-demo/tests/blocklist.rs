//! The `blocklist` plugin tested the way its author would: a private `redis-server` per test,
//! the plugin built by `PluginKit` from a gateway config, requests through its hooks, and the
//! faults it must live through. Only the public API of `redplug`, `redplug-testkit` and this
//! crate is used.

use std::error::Error;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use redplug::Plugin;
use redplug::redis::AsyncCommands;
use redplug_kit_demo::{Blocklist, members_key, refusals_key};
use redplug_testkit::{PluginKit, RedisServer};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error>>;

/// A request from `client`, as the gateway hands it to the plugin.
fn from(client: &str) -> Result<redplug::Request, http::Error> {
    http::Request::get("/v1/orders")
        .header("x-client-id", client)
        .body(Bytes::new())
}

/// Blocks `client` in the set `set`, with a connection of the test's own.
async fn block(server: &RedisServer, set: &str, client: &str) -> TestResult {
    let mut admin = server.async_conn().await;
    let _: i64 = admin.sadd(members_key(set), client).await?;
    Ok(())
}

async fn kit(server: &RedisServer) -> Result<PluginKit<Blocklist>, Box<dyn Error>> {
    let kit = PluginKit::<Blocklist>::builder()
        .pool("blocklist", server)
        .start()
        .await?;
    Ok(kit)
}

#[tokio::test]
async fn a_blocked_client_gets_403_and_each_refusal_is_counted() -> TestResult {
    let server = RedisServer::start();
    block(&server, "blocked", "mallory").await?;
    let kit = kit(&server).await?;

    let first = kit.request(from("mallory")?).await;
    assert_eq!(first.status(), StatusCode::FORBIDDEN);
    assert!(!first.reached_backend());
    assert_eq!(first.header("x-refusals"), Some("1"));
    let second = kit.request(from("mallory")?).await;
    assert_eq!(second.header("x-refusals"), Some("2"));

    let mut admin = server.async_conn().await;
    let counted: i64 = admin.hget(refusals_key("blocked"), "mallory").await?;
    assert_eq!(counted, 2);
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn other_clients_reach_the_backend_marked_as_passed() -> TestResult {
    let server = RedisServer::start();
    block(&server, "blocked", "mallory").await?;
    let kit = kit(&server).await?;

    let exchange = kit.request(from("alice")?).await;
    assert_eq!(exchange.status(), StatusCode::OK);
    let forwarded = exchange
        .forwarded
        .as_ref()
        .ok_or("alice reached the backend")?;
    assert_eq!(forwarded.headers()["x-blocklist"], "passed");
    assert_eq!(exchange.header("x-blocklist-set"), Some("blocked"));

    // No header, no check.
    let anonymous = kit
        .request(http::Request::get("/").body(Bytes::new())?)
        .await;
    assert!(anonymous.reached_backend());
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_plugin_marks_whatever_the_backend_answers() -> TestResult {
    let server = RedisServer::start();
    let kit = kit(&server).await?;
    let mut failure = redplug::Response::new(Bytes::from_static(b"down"));
    *failure.status_mut() = StatusCode::BAD_GATEWAY;
    let response = kit.response(failure).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["x-blocklist-set"], "blocked");
    assert_eq!(response.body(), "down");
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn each_endpoint_checks_its_own_set() -> TestResult {
    let server = RedisServer::start();
    block(&server, "blocked", "mallory").await?;
    block(&server, "admins-only", "alice").await?;
    let kit = PluginKit::<Blocklist>::builder()
        .pool("blocklist", &server)
        .config(json!({ "set": "blocked" }))
        .at_endpoint()
        .settings(json!({ "set": "admins-only" }))
        .start()
        .await?;
    assert!(
        kit.plugin().is_none(),
        "an endpoint's instance is not the service's"
    );
    assert_eq!(kit.chain().scope(), "GET /plugin-kit");

    assert_eq!(
        kit.request(from("alice")?).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(kit.request(from("mallory")?).await.status(), StatusCode::OK);
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn around_a_backend_it_sees_that_backend_s_requests() -> TestResult {
    let server = RedisServer::start();
    block(&server, "blocked", "mallory").await?;
    let kit = PluginKit::<Blocklist>::builder()
        .pool("blocklist", &server)
        .at_backend()
        .start()
        .await?;
    assert_eq!(kit.chain().scope(), "GET /plugin-kit backend 0");
    let refused = kit.request(from("mallory")?).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn its_script_is_on_the_server_before_the_first_request() -> TestResult {
    let server = RedisServer::start();
    let kit = kit(&server).await?;
    let script = Blocklist::SCRIPTS[0].script;
    assert_eq!(script.path(), "scripts/check.lua");
    assert!(server.has_script(script.sha1()));
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn it_lives_through_script_flush_killed_connections_and_a_restart() -> TestResult {
    let server = RedisServer::start();
    block(&server, "blocked", "mallory").await?;
    let kit = kit(&server).await?;
    assert_eq!(
        kit.request(from("mallory")?).await.status(),
        StatusCode::FORBIDDEN
    );

    server.flush_scripts();
    let after_flush = kit.request(from("mallory")?).await;
    assert_eq!(after_flush.status(), StatusCode::FORBIDDEN);
    assert_eq!(after_flush.header("x-refusals"), Some("2"));

    assert!(
        server.kill_clients() >= 1,
        "the plugin's connection was open"
    );
    let after_kill = kit.request(from("mallory")?).await;
    assert_eq!(
        after_kill.header("x-refusals"),
        Some("3"),
        "retried on a new connection"
    );

    // A restart without persistence empties the server: nobody is blocked any more.
    server.restart();
    assert_eq!(kit.request(from("mallory")?).await.status(), StatusCode::OK);
    block(&server, "blocked", "mallory").await?;
    let again = kit.request(from("mallory")?).await;
    assert_eq!(again.header("x-refusals"), Some("1"));
    kit.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_holds_requests_until_it_runs_again() -> TestResult {
    let server = RedisServer::start();
    let kit = kit(&server).await?;
    // Open the plugin's connection first, so the pause hits a request, not a dial.
    assert!(kit.request(from("alice")?).await.reached_backend());

    server.freeze();
    let paused = Instant::now();
    let request = from("alice")?;
    let pending = tokio::spawn(async move {
        let exchange = kit.request(request).await;
        (exchange.status(), kit)
    });
    // How long the server stays paused: the fault itself, not a wait for something.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.thaw();
    let (status, kit) = pending.await?;
    assert_eq!(status, StatusCode::OK);
    assert!(paused.elapsed() >= Duration::from_millis(300));
    kit.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_misspelt_setting_stops_startup_at_its_path() -> TestResult {
    let server = RedisServer::start();
    let error = PluginKit::<Blocklist>::builder()
        .pool("blocklist", &server)
        .config(json!({ "sett": "blocked" }))
        .start()
        .await
        .err()
        .ok_or("a misspelt key must not start")?;
    let message = error.to_string();
    assert!(
        message.contains(r#"extra_config["plugin/redplug"]["blocklist"]"#),
        "{message}"
    );
    assert!(message.contains("unknown field `sett`"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_missing_pool_stops_startup_naming_the_field() -> TestResult {
    let error = PluginKit::<Blocklist>::builder()
        .start()
        .await
        .err()
        .ok_or("the pool is required")?;
    let message = error.to_string();
    assert!(message.contains("field `redis`"), "{message}");
    assert!(
        message.contains(r#"#[redis_pool("blocklist")]"#),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_set_name_that_cannot_be_a_header_fails_init() -> TestResult {
    let server = RedisServer::start();
    let error = PluginKit::<Blocklist>::builder()
        .pool("blocklist", &server)
        .config(json!({ "set": "two\nlines" }))
        .start()
        .await
        .err()
        .ok_or("init refuses the name")?;
    let message = error.to_string();
    assert!(
        message.contains("plugin `blocklist` (service) failed to initialize"),
        "{message}"
    );
    Ok(())
}
