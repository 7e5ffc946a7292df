//! A pool behind Redis Sentinel: `sentinel` instead of `address`.

use serde_json::{Value, json};

use super::*;

/// One pool named `p` behind the sentinels in `sentinel`, with the pool's own `fields`.
fn sentinel_pool(sentinel: Value, fields: Value) -> Value {
    let mut pool = json!({"name": "p", "sentinel": sentinel});
    if let (Some(pool), Some(fields)) = (pool.as_object_mut(), fields.as_object()) {
        pool.extend(fields.clone());
    }
    pool
}

fn sentinel_problems(sentinel: Value) -> Vec<ConfigError> {
    problems(json!({"connection_pools": [sentinel_pool(sentinel, json!({}))]}))
}

#[test]
fn a_pool_follows_a_master_through_its_sentinels() {
    let config = parse_redis(json!({"connection_pools": [sentinel_pool(
        json!({
            "master_name": "mymaster",
            "addresses": ["10.0.0.5:26379", "10.0.0.6:26379"],
            "user_name": "watcher",
            "password": "sentinel-secret"
        }),
        json!({"db": 8, "password": "data-secret", "pool_size": 4}),
    )]}))
    .unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.redis.connection_pools[0];
    assert_eq!(pool.db, 8);
    assert_eq!(pool.options.pool_size, 4);
    let PoolServer::Sentinel(sentinel) = &pool.server else {
        panic!("expected a sentinel pool, got {:?}", pool.server);
    };
    assert_eq!(sentinel.master_name, "mymaster");
    assert_eq!(sentinel.addresses.len(), 2);
    // The sentinels' credentials and the data nodes' are kept apart.
    assert_eq!(
        sentinel.password.as_ref().map(Secret::expose),
        Some("sentinel-secret")
    );
    assert_eq!(
        pool.options.password.as_ref().map(Secret::expose),
        Some("data-secret")
    );
    assert_eq!(sentinel.tls, None, "no own tls: the pool's applies");
    assert_eq!(
        pool.server.to_string(),
        "master `mymaster` via sentinels 10.0.0.5:26379, 10.0.0.6:26379"
    );
    assert_eq!(pool.server.address(), None);
}

#[test]
fn exactly_one_of_address_and_sentinel() {
    let both = pool_problem(json!({
        "sentinel": {"master_name": "m", "addresses": ["10.0.0.5:26379"]}
    }));
    assert_problem(
        &both,
        &format!("{POOL0}.sentinel"),
        "together with `address`",
    );

    let neither = single(problems(json!({"connection_pools": [{"name": "p"}]})));
    assert_problem(&neither, &format!("{POOL0}.address"), "a `sentinel` object");
}

#[test]
fn the_sentinel_object_says_what_is_missing_or_wrong() {
    let errors = sentinel_problems(json!({}));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        &format!("{POOL0}.sentinel.master_name"),
        "\"master_name\": \"mymaster\"",
    );
    assert_problem(
        &errors[1],
        &format!("{POOL0}.sentinel.addresses"),
        "list the sentinels",
    );

    let error = single(sentinel_problems(
        json!({"master_name": "my master", "addresses": ["10.0.0.5:26379"]}),
    ));
    assert_problem(
        &error,
        &format!("{POOL0}.sentinel.master_name"),
        "no spaces",
    );

    let error = single(sentinel_problems(
        json!({"master_name": "m", "addresses": []}),
    ));
    assert_problem(
        &error,
        &format!("{POOL0}.sentinel.addresses"),
        "at least one of sentinels",
    );

    let error = single(sentinel_problems(
        json!({"master_name": "m", "addresses": ["10.0.0.5:26379"], "address": "x:1"}),
    ));
    assert_problem(
        &error,
        &format!("{POOL0}.sentinel.address"),
        "\"addresses\"",
    );

    let error = cluster_problem(json!({
        "sentinel": {"master_name": "m", "addresses": ["10.0.0.5:26379"]}
    }));
    assert_problem(&error, &format!("{CLUSTER0}.sentinel"), "is a pool key");
}
