//! Every option a pool and a cluster share: its default, a value set, and each way it can be
//! wrong. Each case runs on a pool and on a cluster, since both read the same keys.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// The options of a pool and of a cluster built from the same `fields`; they must agree.
fn options(fields: Value) -> ConnectionOptions {
    let from_pool = pool(fields.clone()).options;
    let from_cluster = cluster(fields).options;
    assert_eq!(format!("{from_pool:?}"), format!("{from_cluster:?}"));
    from_pool
}

/// The single problem with `fields`, on a pool and on a cluster; returns the key path after
/// the entry (`.dial_timeout`) and the message.
fn problem(fields: Value) -> (String, String) {
    let on_pool = pool_problem(fields.clone());
    let on_cluster = cluster_problem(fields);
    let suffix = on_pool.path.strip_prefix(POOL0).unwrap_or("?").to_owned();
    assert_eq!(on_cluster.path, format!("{CLUSTER0}{suffix}"));
    assert_eq!(on_pool.message, on_cluster.message);
    assert_eq!(on_pool.value, on_cluster.value);
    (suffix, on_pool.message)
}

#[track_caller]
fn assert_option_problem(fields: Value, key: &str, fragment: &str) {
    let (suffix, message) = problem(fields);
    assert_eq!(suffix, format!(".{key}"));
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn defaults_match_krakend() {
    let o = options(json!({}));
    assert!(o.user_name.is_none());
    assert!(o.password.is_none());
    assert_eq!(o.client_name, None);
    assert_eq!(o.pool_size, 10);
    assert_eq!(o.pool_timeout, SECS(4));
    assert_eq!(o.dial_timeout, SECS(5));
    assert_eq!(o.conn_max_idle_time, Some(SECS(30 * 60)));
    assert_eq!(o.conn_max_life_time, None);
    assert_eq!(o.max_active_conns, None);
    assert_eq!(o.min_idle_conns, 0);
    assert_eq!(o.max_idle_conns, None);
    assert_eq!(o.retry.max_retries, 3);
    assert_eq!(o.retry.min_backoff, MS(8));
    assert_eq!(o.retry.max_backoff, MS(512));
    assert!(o.tls.is_none());
    assert_eq!(o.opentelemetry, TelemetryConfig::default());
    assert_eq!(pool(json!({})).db, 0);
    assert_eq!(cluster(json!({})).max_redirects, Some(3));
}

#[test]
fn every_option_can_be_set() {
    let o = options(json!({
        "user_name": "app",
        "password": "pw",
        "client_name": "krakend_pool",
        "pool_size": 50,
        "pool_timeout": "1.5s",
        "dial_timeout": "250ms",
        "conn_max_idle_time": "5m",
        "conn_max_life_time": "1h",
        "max_active_conns": 40,
        "min_idle_conns": 5,
        "max_idle_conns": 20,
        "max_retries": 7,
        "min_retry_backoff": "1ms",
        "max_retry_backoff": "2s",
        "tls": {},
        "opentelemetry": {
            "disable_metrics": true,
            "disable_traces": true,
            "traces_static_attributes": [{"key": "env", "value": "prod"}]
        }
    }));
    assert_eq!(o.user_name.as_ref().map(Secret::expose), Some("app"));
    assert_eq!(o.password.as_ref().map(Secret::expose), Some("pw"));
    assert_eq!(o.client_name.as_deref(), Some("krakend_pool"));
    assert_eq!(o.pool_size, 50);
    assert_eq!(o.pool_timeout, MS(1500));
    assert_eq!(o.dial_timeout, MS(250));
    assert_eq!(o.conn_max_idle_time, Some(SECS(300)));
    assert_eq!(o.conn_max_life_time, Some(SECS(3600)));
    assert_eq!(o.max_active_conns, Some(40));
    assert_eq!(o.max_connections(), 40);
    assert_eq!(o.min_idle_conns, 5);
    assert_eq!(o.max_idle_conns, Some(20));
    assert_eq!(o.retry.max_retries, 7);
    assert_eq!(o.retry.min_backoff, MS(1));
    assert_eq!(o.retry.max_backoff, SECS(2));
    assert!(o.tls.is_some());
    assert!(o.opentelemetry.disable_metrics);
    assert!(o.opentelemetry.disable_traces);
    assert_eq!(
        o.opentelemetry.traces_static_attributes,
        [("env".to_owned(), "prod".to_owned())]
    );
    assert_eq!(pool(json!({"db": 8})).db, 8);
    assert_eq!(cluster(json!({"max_redirects": 9})).max_redirects, Some(9));
}

#[test]
fn zero_means_the_default_as_in_go_redis() {
    let o = options(json!({
        "pool_size": 0,
        "pool_timeout": "0s",
        "dial_timeout": "0",
        "max_active_conns": 0,
        "max_idle_conns": 0,
        "max_retries": 0,
        "min_retry_backoff": "0ms",
        "max_retry_backoff": "0s",
        "client_name": ""
    }));
    assert_eq!(o.pool_size, 10);
    assert_eq!(o.pool_timeout, SECS(4));
    assert_eq!(o.dial_timeout, SECS(5));
    assert_eq!(o.max_active_conns, None);
    assert_eq!(o.max_idle_conns, None);
    assert_eq!(o.retry, RetryConfig::default());
    assert_eq!(o.client_name, None);
    assert_eq!(cluster(json!({"max_redirects": 0})).max_redirects, Some(3));
}

#[test]
fn minus_one_turns_retries_and_redirects_off() {
    assert_eq!(options(json!({"max_retries": -1})).retry.max_retries, 0);
    assert_eq!(cluster(json!({"max_redirects": -1})).max_redirects, None);
}

#[test]
fn zero_or_negative_turns_idle_and_life_limits_off() {
    for off in ["0", "0s", "-1s", "-1ns"] {
        let o = options(json!({"conn_max_idle_time": off, "conn_max_life_time": off}));
        assert_eq!(o.conn_max_idle_time, None, "{off}");
        assert_eq!(o.conn_max_life_time, None, "{off}");
    }
}

#[test]
fn durations_use_go_syntax() {
    let o = options(
        json!({"dial_timeout": "1m30s", "pool_timeout": ".5s", "min_retry_backoff": "500\u{b5}s"}),
    );
    assert_eq!(o.dial_timeout, SECS(90));
    assert_eq!(o.pool_timeout, MS(500));
    assert_eq!(o.retry.min_backoff, Duration::from_micros(500));
}

#[test]
fn a_bad_duration_says_why_and_shows_a_valid_one() {
    let (suffix, message) = problem(json!({"dial_timeout": "5 seconds"}));
    assert_eq!(suffix, ".dial_timeout");
    assert!(
        message.starts_with("is not a duration: \" seconds\" is not a unit"),
        "{message}"
    );
    assert!(message.contains("\"36h\""), "{message}");
    assert_option_problem(
        json!({"pool_timeout": 5}),
        "pool_timeout",
        "durations are strings with a unit",
    );
    assert_option_problem(
        json!({"conn_max_idle_time": "1d"}),
        "conn_max_idle_time",
        "\"d\" is not a unit",
    );
    assert_option_problem(
        json!({"conn_max_life_time": "3000000h"}),
        "conn_max_life_time",
        "too long",
    );
    assert_option_problem(
        json!({"max_retry_backoff": "1"}),
        "max_retry_backoff",
        "has no unit",
    );
}

#[test]
fn negative_timeouts_and_backoffs_are_errors() {
    for (key, default) in [
        ("pool_timeout", "\"4s\""),
        ("dial_timeout", "\"5s\""),
        ("min_retry_backoff", "\"8ms\""),
        ("max_retry_backoff", "\"512ms\""),
    ] {
        assert_option_problem(
            json!({ key: "-1s" }),
            key,
            "is negative; write a positive duration",
        );
        assert_option_problem(json!({ key: "-1s" }), key, default);
    }
}

#[test]
fn counts_must_be_non_negative_integers() {
    for key in [
        "pool_size",
        "max_active_conns",
        "min_idle_conns",
        "max_idle_conns",
    ] {
        assert_option_problem(json!({ key: -1 }), key, "is negative");
        assert_option_problem(json!({ key: 1.5 }), key, "is not a whole number");
        assert_option_problem(json!({ key: 1e99 }), key, "is too large");
        assert_option_problem(json!({ key: "10" }), key, "without quotes: 10");
    }
    assert_eq!(pool_problem(json!({"db": -1})).path, format!("{POOL0}.db"));
    assert_problem(
        &pool_problem(json!({"db": 2.0})),
        &format!("{POOL0}.db"),
        "plain integer",
    );
}

#[test]
fn retry_and_redirect_counts_accept_only_minus_one_below_zero() {
    assert_option_problem(
        json!({"max_retries": -2}),
        "max_retries",
        "write -1 to never retry",
    );
    assert_problem(
        &cluster_problem(json!({"max_redirects": -5})),
        &format!("{CLUSTER0}.max_redirects"),
        "write -1 to never follow redirects",
    );
    assert_option_problem(
        json!({"max_retries": 99999999999_i64}),
        "max_retries",
        "is too large",
    );
}

#[test]
fn credentials_and_names_must_be_strings() {
    assert_option_problem(
        json!({"user_name": 5}),
        "user_name",
        "must be a string, but is a number",
    );
    assert_option_problem(
        json!({"client_name": false}),
        "client_name",
        "is a boolean, but this key takes a string",
    );
    assert_option_problem(
        json!({"client_name": "my pool"}),
        "client_name",
        "without spaces",
    );
}

#[test]
fn null_is_not_a_default() {
    assert_option_problem(json!({"pool_size": null}), "pool_size", "leave the key out");
}

#[test]
fn min_idle_conns_cannot_exceed_pool_size() {
    assert_option_problem(
        json!({"min_idle_conns": 11}),
        "min_idle_conns",
        "is more than pool_size (10, the default)",
    );
    assert_option_problem(
        json!({"min_idle_conns": 6, "pool_size": 5}),
        "min_idle_conns",
        "is more than pool_size (5)",
    );
    assert_eq!(options(json!({"min_idle_conns": 10})).min_idle_conns, 10);
}

#[test]
fn idle_and_active_limits_cannot_be_below_min_idle_conns() {
    assert_option_problem(
        json!({"min_idle_conns": 4, "max_idle_conns": 3}),
        "max_idle_conns",
        "is less than min_idle_conns (4)",
    );
    assert_option_problem(
        json!({"min_idle_conns": 4, "max_active_conns": 2}),
        "max_active_conns",
        "is less than min_idle_conns (4)",
    );
    // 0 means "no limit", so it is never below anything.
    let o = options(json!({"min_idle_conns": 4, "max_idle_conns": 0, "max_active_conns": 0}));
    assert_eq!((o.max_idle_conns, o.max_active_conns), (None, None));
}

#[test]
fn min_retry_backoff_cannot_exceed_max() {
    assert_option_problem(
        json!({"min_retry_backoff": "1s"}),
        "min_retry_backoff",
        "is longer than max_retry_backoff (512ms, the default)",
    );
    assert_option_problem(
        json!({"max_retry_backoff": "1ms"}),
        "max_retry_backoff",
        "is shorter than min_retry_backoff (8ms, the default)",
    );
    assert_option_problem(
        json!({"min_retry_backoff": "2s", "max_retry_backoff": "1s"}),
        "min_retry_backoff",
        "(1s)",
    );
}

#[test]
fn a_wrong_value_is_reported_once_not_again_by_related_checks() {
    let (suffix, _) = problem(json!({"pool_size": "many", "min_idle_conns": 50}));
    assert_eq!(suffix, ".pool_size");
    let (suffix, _) = problem(json!({"min_retry_backoff": "1d", "max_retry_backoff": "1ms"}));
    assert_eq!(suffix, ".min_retry_backoff");
}

#[test]
fn unknown_keys_suggest_the_closest_known_key() {
    assert_option_problem(
        json!({"dial_timout": "1s"}),
        "dial_timout",
        "did you mean `dial_timeout`?",
    );
    assert_option_problem(
        json!({"PoolSize": 1}),
        "PoolSize",
        "did you mean `pool_size`?",
    );
    let message = pool_problem(json!({"sentinel_addrs": []})).message;
    assert!(
        message.starts_with("unknown key; the keys allowed here are `name`, "),
        "{message}"
    );
    assert!(message.contains("`opentelemetry`"), "{message}");
}

#[test]
fn opentelemetry_is_checked_key_by_key() {
    assert_option_problem(
        json!({"opentelemetry": {"disable_metric": true}}),
        "opentelemetry.disable_metric",
        "did you mean `disable_metrics`?",
    );
    assert_option_problem(
        json!({"opentelemetry": {"disable_traces": "true"}}),
        "opentelemetry.disable_traces",
        "write the boolean without quotes: true",
    );
    assert_option_problem(
        json!({"opentelemetry": {"traces_static_attributes": {"env": "prod"}}}),
        "opentelemetry.traces_static_attributes",
        "takes an array",
    );
    assert_option_problem(
        json!({"opentelemetry": {"traces_static_attributes": [{"key": "env"}]}}),
        "opentelemetry.traces_static_attributes[0].value",
        "required key is missing",
    );
    assert_option_problem(
        json!({"opentelemetry": {"traces_static_attributes": [{"key": " ", "value": "x"}]}}),
        "opentelemetry.traces_static_attributes[0].key",
        "is empty",
    );
    assert_option_problem(
        json!({"opentelemetry": {"traces_static_attributes": [{"key": "n", "value": 1}]}}),
        "opentelemetry.traces_static_attributes[0].value",
        "is a number, but this key takes a string",
    );
}
