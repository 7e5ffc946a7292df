//! What the hardening issue found a hostile file could do, each now refused or bounded: repeated
//! keys, numbers shown as they were not written, names that act on a terminal, sizes no machine
//! holds, and KrakenD's comment keys where its schema allows them.

use super::*;

/// The config text as written, since `json!` cannot repeat a key or keep `1e1`.
fn raw_problems(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(errors) => errors.into_vec(),
    }
}

#[test]
fn repeated_keys_are_reported_wherever_they_are() {
    let errors = raw_problems(
        r#"{"extra_config": {
            "redis": {"connection_pools": [
                {"name": "cache", "address": "localhost:6379", "db": 8, "db": 3}
            ]},
            "plugin/redplug": {"counter": {"limit": 1, "limit": 2}}
        }}"#,
    );
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "extra_config.redis.connection_pools[0].db",
            "extra_config[\"plugin/redplug\"].counter.limit"
        ]
    );
    assert!(
        errors[0].message.contains("appears twice") && errors[0].message.contains("line 3"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_second_redis_section_does_not_silently_replace_the_first() {
    let errors = raw_problems(
        r#"{"extra_config": {"redis": {"connection_pools": [{"name": "a", "address": "h:1"}]},
            "redis": {}}}"#,
    );
    assert_problem(&single(errors), "extra_config.redis", "appears twice");
}

#[test]
fn minus_zero_is_zero() {
    let config = parse(
        r#"{"extra_config": {"redis": {"connection_pools": [
            {"name": "cache", "address": "localhost:6379", "db": -0}
        ]}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.redis.connection_pools[0].db, 0);
}

#[test]
fn numbers_are_shown_as_written() {
    let errors = raw_problems(
        r#"{"extra_config": {"redis": {"connection_pools": [
            {"name": "cache", "address": "localhost:6379", "db": 1e1, "pool_size": 1e400,
             "dial_timeout": 5E0}
        ]}}}"#,
    );
    let values: Vec<Option<&str>> = errors.iter().map(|e| e.value.as_deref()).collect();
    assert_eq!(
        values,
        [Some("1e1"), Some("1e400"), Some("5E0")],
        "{errors:#?}"
    );
    assert!(
        errors[0].message.contains("plain integer 10"),
        "{}",
        errors[0]
    );
    for error in &errors {
        assert!(!error.message.contains("comment"), "{error}");
    }
}

#[test]
fn names_may_not_hold_control_or_direction_characters() {
    for (name, what) in [
        ("\u{1b}[2Jcache", "U+001B ESCAPE"),
        ("cache\u{202e}8", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("line\nbreak", "U+000A LINE FEED"),
    ] {
        let error = pool_problem(json!({ "name": name }));
        assert_problem(&error, &format!("{POOL0}.name"), what);
        let shown = error.to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "the report itself carries the character: {shown:?}"
        );
    }
}

#[test]
fn invisible_characters_in_keys_and_values_are_escaped_in_reports() {
    let error = pool_problem(json!({ "dial_timeout": "5s\u{200b}" }));
    let shown = error.to_string();
    assert!(shown.contains("\\u{200b}"), "{shown}");
    assert!(!shown.contains('\u{200b}'), "{shown}");
}

#[test]
fn sizes_are_bounded_per_pool_and_in_total() {
    let error = pool_problem(json!({ "pool_size": 1_000_000_000 }));
    assert_problem(
        &error,
        &format!("{POOL0}.pool_size"),
        "the most this key accepts is 10000 connections",
    );
    for key in ["min_idle_conns", "max_idle_conns", "max_active_conns"] {
        let errors = problems(json!({"connection_pools": [with_pool_defaults(
            json!({ key: 10_001, "pool_size": 10_000 })
        )]}));
        assert!(
            errors
                .iter()
                .any(|e| e.path == format!("{POOL0}.{key}")
                    && e.message.contains("10000 connections")),
            "{key}: {errors:#?}"
        );
    }
    let pools: Vec<Value> = (0..11)
        .map(|i| json!({"name": format!("p{i}"), "address": "h:1", "pool_size": 10_000}))
        .collect();
    let error = single(problems(json!({ "connection_pools": pools })));
    assert_problem(
        &error,
        "extra_config.redis.connection_pools[10]",
        "to 110000, more than the 100000 redplug holds at once",
    );
}

#[test]
fn connections_opened_at_startup_must_fit_the_open_file_limit() {
    let pools: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("p{i}"), "address": "h:1", "pool_size": 300, "min_idle_conns": 300}))
        .collect();
    let node_text = json!({ "connection_pools": pools }).to_string();
    let mut budget = json::Budget::default();
    let tree = json::parse(&node_text, 0, &mut budget).unwrap();
    let mut p = Problems::default();
    let config = redis::read_redis_with_limit(
        &Node::new(&tree, "extra_config.redis"),
        &mut p,
        Path::new(""),
        Some(1_000),
    );
    let (errors, _) = p.into_parts();
    assert_eq!(config.connection_pools.len(), 3);
    let error = single(errors);
    assert_problem(
        &error,
        "extra_config.redis.connection_pools[2]",
        "to 900, but this process may open only 1000 files (`ulimit -n`)",
    );
}

#[test]
fn krakend_comment_keys_load_in_the_redis_and_tls_objects() {
    let config = parse(
        r##"{"extra_config": {"redis": {
            "@comment": "shared connections",
            "$id": "redis",
            "_note": "owned by the platform team",
            "#todo": "add a replica",
            "connection_pools": [{"name": "cache", "address": "localhost:6379",
                "tls": {"@comment": "the CA is the system's", "_reviewed": "2026-11"}}]
        }}}"##,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.redis.connection_pools[0].options.tls.is_some());
    // Not in a pool entry, where KrakenD's schema has no such keys.
    let error = pool_problem(json!({ "@comment": "x" }));
    assert!(error.message.contains("KrakenD comments"), "{error}");
}
