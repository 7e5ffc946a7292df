//! Tests of the config loader as a user meets it: a JSON file in, a `Config` or a list of
//! problems out, each problem checked by its path and the words that tell the user what to do.

mod hostile;
mod keys;
mod names;
mod secrets;
mod sentinel;
mod tls;

use serde_json::{Value, json};

use super::*;

/// Parses `{"extra_config": {"redis": <redis>}}`.
fn parse_redis(redis: Value) -> Result<Config, ConfigErrors> {
    parse(&json!({ "extra_config": { "redis": redis } }).to_string())
}

/// Adds `name` and `address` to `fields` unless they are given.
fn with_pool_defaults(fields: Value) -> Value {
    let mut pool = json!({"name": "p", "address": "localhost:6379"});
    if let (Some(pool), Some(fields)) = (pool.as_object_mut(), fields.as_object()) {
        pool.extend(fields.clone());
    }
    pool
}

/// Adds `name` and `addresses` to `fields` unless they are given.
fn with_cluster_defaults(fields: Value) -> Value {
    let mut cluster = json!({"name": "c", "addresses": ["10.0.0.1:6379"]});
    if let (Some(cluster), Some(fields)) = (cluster.as_object_mut(), fields.as_object()) {
        cluster.extend(fields.clone());
    }
    cluster
}

/// The one pool of a config that must be valid.
fn pool(fields: Value) -> PoolConfig {
    let config = parse_redis(json!({"connection_pools": [with_pool_defaults(fields)]}))
        .unwrap_or_else(|e| panic!("{e}"));
    config.redis.connection_pools[0].clone()
}

/// The one cluster of a config that must be valid.
fn cluster(fields: Value) -> ClusterConfig {
    let config = parse_redis(json!({"clusters": [with_cluster_defaults(fields)]}))
        .unwrap_or_else(|e| panic!("{e}"));
    config.redis.clusters[0].clone()
}

/// The problems in a config that must be invalid.
fn problems(redis: Value) -> Vec<ConfigError> {
    match parse_redis(redis) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(errors) => errors.into_vec(),
    }
}

/// The single problem with one pool built from `fields`.
fn pool_problem(fields: Value) -> ConfigError {
    single(problems(
        json!({"connection_pools": [with_pool_defaults(fields)]}),
    ))
}

/// The single problem with one cluster built from `fields`.
fn cluster_problem(fields: Value) -> ConfigError {
    single(problems(
        json!({"clusters": [with_cluster_defaults(fields)]}),
    ))
}

fn single(mut errors: Vec<ConfigError>) -> ConfigError {
    assert_eq!(errors.len(), 1, "expected one problem: {errors:#?}");
    errors.remove(0)
}

/// Asserts the path exactly and that the message holds `fragment`.
#[track_caller]
fn assert_problem(error: &ConfigError, path: &str, fragment: &str) {
    assert_eq!(error.path, path, "{error}");
    assert!(
        error.message.contains(fragment),
        "message {:?} lacks {fragment:?}",
        error.message
    );
    let first = error.message.chars().next().unwrap_or('x');
    assert!(!first.is_uppercase(), "message starts upper case: {error}");
}

const POOL0: &str = "extra_config.redis.connection_pools[0]";
const CLUSTER0: &str = "extra_config.redis.clusters[0]";

/// A krakend.json as found in the wild: the gateway's own keys around ours.
const KRAKEND_JSON: &str = r#"{
  "$schema": "https://www.krakend.io/schema/v2.11/krakend.json",
  "version": 3,
  "name": "My gateway",
  "port": 8080,
  "timeout": "3000ms",
  "cache_ttl": "300s",
  "output_encoding": "json",
  "extra_config": {
    "telemetry/logging": {"level": "DEBUG", "prefix": "[KRAKEND]", "stdout": true},
    "security/cors": {"allow_origins": ["*"], "allow_methods": ["GET", "POST"]},
    "qos/ratelimit/service/redis": {"connection_name": "shared_redis_pool", "max_rate": 10},
    "plugin/http-server": {"name": ["redplug-host"], "redplug-host": {}},
    "redis": {
      "connection_pools": [
        {"name": "shared_redis_pool", "address": "192.168.1.45:6379"},
        {"name": "ratelimit_counters", "address": "192.168.1.52:6379", "db": 2}
      ],
      "clusters": [
        {"name": "shared_redis_cluster", "addresses": ["192.168.1.90:6379", "192.168.1.91:6379"]}
      ]
    },
    "plugin/redplug": {
      "counter": {"limit": 100, "window": "1m"},
      "audit": null
    }
  },
  "endpoints": [
    {
      "endpoint": "/v1/counter/{id}",
      "method": "GET",
      "output_encoding": "no-op",
      "extra_config": {"redis": "not ours: only the top-level extra_config is read"},
      "backend": [
        {
          "url_pattern": "/counter/{id}",
          "host": ["http://backend:8000"],
          "extra_config": {"plugin/req-resp-modifier": {"name": ["counter"]}}
        }
      ]
    }
  ]
}"#;

#[test]
fn reads_ours_from_a_full_krakend_file_and_ignores_the_rest() {
    let config = parse(KRAKEND_JSON).unwrap_or_else(|e| panic!("{e}"));
    let pools = &config.redis.connection_pools;
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0].name, "shared_redis_pool");
    assert_eq!(pools[0].server.to_string(), "192.168.1.45:6379");
    assert_eq!(pools[1].db, 2);
    let cluster = &config.redis.clusters[0];
    assert_eq!(cluster.name, "shared_redis_cluster");
    assert_eq!(cluster.addresses.len(), 2);
    assert_eq!(
        config.plugins["counter"],
        json!({"limit": 100, "window": "1m"})
    );
    assert_eq!(config.plugins["audit"], Value::Null);
}

#[test]
fn a_config_without_redis_is_empty() {
    for json in [
        "{}",
        r#"{"version": 3, "endpoints": []}"#,
        r#"{"extra_config": {}}"#,
        r#"{"extra_config": {"telemetry/logging": {"level": "INFO"}}}"#,
        r#"{"extra_config": {"redis": {}}}"#,
        r#"{"extra_config": {"redis": {"connection_pools": [], "clusters": []}}}"#,
    ] {
        let config = parse(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert!(config.redis.connection_pools.is_empty());
        assert!(config.redis.clusters.is_empty());
        assert!(config.plugins.is_empty());
    }
}

#[test]
fn a_syntax_error_gives_line_and_column() {
    let json = "{\n  \"extra_config\": {\n    \"redis\": {,}\n  }\n}";
    let errors = parse(json).unwrap_err();
    let error = single(errors.clone().into_vec());
    assert_eq!(error.path, "");
    assert!(
        error.message.contains("at line 3, column 15"),
        "{}",
        error.message
    );
    assert!(
        errors
            .to_string()
            .starts_with("the config has 1 problem:\n  - the file is not valid JSON")
    );
}

#[test]
fn a_trailing_comma_is_a_syntax_error() {
    let errors = parse("{\"extra_config\": {},}").unwrap_err();
    assert!(
        errors.errors()[0].message.contains("line 1, column 21"),
        "{errors}"
    );
}

#[test]
fn every_problem_in_the_file_is_reported_together() {
    let errors = parse_redis(json!({
        "connection_pools": [
            {"name": "a", "address": "localhost:6379", "dial_timeout": "5 seconds"},
            {"name": "b", "address": "localhost", "pool_size": -1, "dial_timout": "1s"}
        ],
        "clusters": [{"name": "a", "addresses": []}]
    }))
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "extra_config.redis.connection_pools[0].dial_timeout",
            "extra_config.redis.connection_pools[1].dial_timout",
            "extra_config.redis.connection_pools[1].address",
            "extra_config.redis.connection_pools[1].pool_size",
            "extra_config.redis.clusters[0].name",
            "extra_config.redis.clusters[0].addresses",
        ]
    );
    let text = errors.to_string();
    assert!(
        text.starts_with("the config has 6 problems:\n  - "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(text.contains(
        "extra_config.redis.connection_pools[0].dial_timeout: \"5 seconds\" is not a duration: "
    ));
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("krakend.json");
    std::fs::write(&path, KRAKEND_JSON).unwrap();
    assert_eq!(load(&path).unwrap().redis.connection_pools.len(), 2);

    std::fs::write(&path, r#"{"extra_config": {"redis": {"clusters": 1}}}"#).unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.file(), Some(path.as_path()));
    assert!(
        errors
            .to_string()
            .starts_with(&format!("the config `{}` has 1 problem:", path.display()))
    );

    let missing = dir.path().join("nope.json");
    let errors = load(&missing).unwrap_err();
    let error = single(errors.into_vec());
    assert!(
        error.message.starts_with("cannot read the config file `"),
        "{error}"
    );
    assert!(error.message.contains("nope.json"), "{error}");
}

#[test]
fn wrong_types_name_the_path_the_type_and_the_value() {
    let cases = [
        (
            json!({"extra_config": []}),
            "extra_config",
            "is an array, but this key takes an object",
        ),
        (
            json!({"extra_config": {"redis": "x"}}),
            "extra_config.redis",
            "is a string, but",
        ),
        (
            json!({"extra_config": {"redis": {"connection_pools": {}}}}),
            "extra_config.redis.connection_pools",
            "takes an array",
        ),
        (
            json!({"extra_config": {"redis": {"clusters": [7]}}}),
            "extra_config.redis.clusters[0]",
            "is a number, but this key takes an object",
        ),
        (
            json!({"extra_config": {"plugin/redplug": ["counter"]}}),
            "extra_config[\"plugin/redplug\"]",
            "takes an object with one entry per plugin",
        ),
    ];
    for (json, path, fragment) in cases {
        let error = single(parse(&json.to_string()).unwrap_err().into_vec());
        assert_problem(&error, path, fragment);
        assert!(error.value.is_some());
    }
    let error = single(parse("[1]").unwrap_err().into_vec());
    assert_eq!(
        error.to_string(),
        "the file holds an array, but a gateway config is a JSON object such as {\"version\": \
         3, \"extra_config\": {...}}"
    );
}

#[test]
fn unknown_keys_in_redis_are_errors_with_a_suggestion() {
    let error = single(problems(json!({"connection_pool": []})));
    assert_problem(
        &error,
        "extra_config.redis.connection_pool",
        "did you mean `connection_pools`?",
    );
    let error = single(problems(json!({"sentinels": []})));
    assert_problem(
        &error,
        "extra_config.redis.sentinels",
        "the keys allowed here are `connection_pools`, `clusters`",
    );
    let error = single(problems(json!({"address": "localhost:6379"})));
    assert_problem(
        &error,
        "extra_config.redis.address",
        "list pools under `connection_pools`",
    );
}
