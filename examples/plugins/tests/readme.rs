//! The test that README's "Writing a plugin" shows, kept here so that it compiles and passes:
//! edit both together.

use bytes::Bytes;
use http::StatusCode;
use redplug_example_plugins::RateLimit;
use redplug_testkit::{PluginKit, RedisServer};
use serde_json::json;

#[tokio::test]
async fn the_third_request_in_a_minute_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    // A private redis-server on a free loopback port, killed when the test ends.
    let server = RedisServer::start();
    // As listed at an endpoint with that endpoint's settings; injection, config, script
    // loading and `init` happen as in the gateway, and fail as they would there.
    let kit = PluginKit::<RateLimit>::builder()
        .pool("ratelimit_counters", &server)
        .at_endpoint()
        .settings(json!({ "limit": 2, "window": "1m", "key_prefix": "users" }))
        .start()
        .await?;
    let from_alice = || {
        http::Request::get("/v1/users/42")
            .header("x-client-id", "alice")
            .body(Bytes::new())
    };

    assert!(kit.request(from_alice()?).await.reached_backend());
    assert!(kit.request(from_alice()?).await.reached_backend());
    let third = kit.request(from_alice()?).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.header("retry-after"), Some("60"));

    // The script cache emptied (as by a failover) and every connection cut: still refused.
    server.flush_scripts();
    server.kill_clients();
    assert_eq!(
        kit.request(from_alice()?).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A restart without persistence forgets the window.
    server.restart();
    assert!(kit.request(from_alice()?).await.reached_backend());
    kit.shutdown().await;
    Ok(())
}
