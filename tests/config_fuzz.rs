//! Property tests of the config loader: arbitrary bytes, mutated real configs and arbitrary
//! JSON (anywhere, and under `extra_config.redis` with real key names) never panic, every
//! problem comes back as an error with a JSON path, and credentials are never echoed.
//!
//! The case count is bounded for CI (`PROPTEST_CASES` raises it for a longer local run). A
//! failure prints the shrunk input; add it to `tests/config_corpus/` once fixed. Failures are
//! not persisted to files, so a run leaves the source tree as it found it.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use redplug::duration::{GoDuration, parse_duration};
use redplug_runtime::config;
use serde_json::{Map, Number, Value, json};

/// Cases per property unless `PROPTEST_CASES` says otherwise: about a second each in a debug
/// build.
const DEFAULT_CASES: u32 = 2048;

fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Marks every credential the generators write, so a leak can be searched for.
const SECRET_MARK: &str = "pw-q7Zx";

/// The keys a pool or cluster accepts, and some it does not.
const KEYS: &[&str] = &[
    "name",
    "address",
    "addresses",
    "db",
    "max_redirects",
    "client_name",
    "conn_max_idle_time",
    "conn_max_life_time",
    "dial_timeout",
    "max_active_conns",
    "max_idle_conns",
    "max_retries",
    "max_retry_backoff",
    "min_idle_conns",
    "min_retry_backoff",
    "opentelemetry",
    "password",
    "pool_size",
    "pool_timeout",
    "tls",
    "user_name",
    "dial_timout",
    "Name",
];

const TLS_KEYS: &[&str] = &[
    "allow_insecure_connections",
    "ca_certs",
    "disable_system_ca_pool",
    "client_certs",
    "min_version",
    "max_version",
    "certificate",
    "private_key",
    "cipher_suites",
    "curve_preferences",
];

const TELEMETRY_KEYS: &[&str] = &[
    "disable_metrics",
    "disable_traces",
    "traces_static_attributes",
    "key",
    "value",
];

/// Numbers at the edges of every range the loader checks.
fn number() -> impl Strategy<Value = Value> {
    let edges = [
        json!(0),
        json!(-1),
        json!(-2),
        json!(1),
        json!(i32::MAX),
        json!(i32::MAX as i64 + 1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(-0.0),
        json!(1e2),
        json!(1e308),
        json!(-1e308),
        json!(f64::MIN_POSITIVE),
    ];
    prop_oneof![
        proptest::sample::select(edges.to_vec()),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            Number::from_f64(f).map(Value::Number)
        }),
    ]
}

/// Strings shaped like what the loader parses: durations, addresses, URLs with credentials,
/// TLS versions, file names, names with unicode tricks, and anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+]?([0-9]{0,22}(\\.[0-9]{0,22})?(ns|us|µs|μs|ms|s|m|h|d|\\.|)){0,4}",
        "(\\[[0-9a-fA-F:%.a-z]{0,24}\\]?|[a-z0-9._:-]{0,24})(:[0-9+-]{0,8})?",
        "[a-z]{0,6}://([a-z]{0,6}:)?[a-z]{0,6}@[a-z.]{0,10}(:[0-9]{0,6})?(/[0-9]{0,3})?",
        "(TLS|SSL)[0-9.]{0,4}",
        "(|\\.|/|missing|/dev/null|pem/|\\.\\./)[a-z./-]{0,12}",
        "[ \u{a0}\u{200b}\u{3000}\u{202e}\t]{0,2}[a-zé\u{301}_]{0,8}[ \u{a0}\u{200b}\u{3000}]{0,2}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value, with object keys drawn from the loader's own keys as often as not.
fn json_value() -> impl Strategy<Value = Value> {
    let known: Vec<String> = [KEYS, TLS_KEYS, TELEMETRY_KEYS]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let key = prop_oneof![proptest::sample::select(known), any::<String>()];
    leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A pool or cluster entry: real keys with arbitrary values. Credentials, and the URLs with
/// a password that users paste as addresses, carry [`SECRET_MARK`]; nothing else does.
fn entry() -> impl Strategy<Value = Value> {
    let field = (proptest::sample::select(KEYS), json_value());
    let url = "redis://[a-z]{0,4}:pw-q7Zx[a-z0-9]{1,6}@[a-z]{1,8}:[0-9]{1,4}";
    let secrets = (
        proptest::option::of("pw-q7Zx[a-z0-9]{1,8}"),
        proptest::option::of("pw-q7Zx[a-z0-9]{1,8}"),
        proptest::option::of((url, 0u8..3)),
    );
    let tls = proptest::option::of(proptest::collection::vec(
        (proptest::sample::select(TLS_KEYS), json_value()),
        0..5,
    ));
    (proptest::collection::vec(field, 0..10), secrets, tls).prop_map(
        |(fields, (user, password, url), tls)| {
            let mut entry: Map<String, Value> = fields
                .into_iter()
                .filter(|(key, _)| !matches!(*key, "password" | "user_name"))
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
            match url {
                Some((url, 0)) => entry.insert("address".into(), json!(url)),
                Some((url, 1)) => entry.insert("addresses".into(), json!([url])),
                Some((url, _)) => entry.insert("addresses".into(), json!(url)),
                None => None,
            };
            if let Some(user) = user {
                entry.insert("user_name".into(), Value::String(user));
            }
            if let Some(password) = password {
                entry.insert("password".into(), Value::String(password));
            }
            if let Some(tls) = tls {
                let tls = tls.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                entry.insert("tls".into(), Value::Object(tls));
            }
            Value::Object(entry)
        },
    )
}

/// A whole config with `redis` built from [`entry`]s.
fn redis_config() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(entry(), 0..4),
        proptest::collection::vec(entry(), 0..3),
        proptest::option::of(json_value()),
    )
        .prop_map(|(pools, clusters, plugins)| {
            let mut extra = json!({
                "redis": { "connection_pools": pools, "clusters": clusters }
            });
            if let Some(plugins) = plugins {
                extra["plugin/redplug"] = plugins;
            }
            json!({ "extra_config": extra })
        })
}

/// Loads `text` and checks what must hold whatever it is; panics (so proptest reports and
/// shrinks the input) when something does not.
fn load_and_check(text: &str) {
    match config::parse(text) {
        Ok(config) => {
            let debug = format!("{config:?}");
            assert!(
                !debug.contains(SECRET_MARK) || !text.contains(SECRET_MARK),
                "Debug of a config shows a credential: {debug}"
            );
        }
        Err(errors) => {
            assert!(!errors.errors().is_empty());
            let rendered = format!("{errors}\n{errors:?}");
            for error in &errors {
                assert!(
                    error.path.is_empty() || error.path.starts_with("extra_config"),
                    "an error outside the keys redplug reads: {error}"
                );
                assert!(!error.message.is_empty(), "{error:?}");
            }
            // Credentials only ever appear in the generated configs as marked strings.
            assert!(
                !rendered.contains(SECRET_MARK),
                "an error shows a credential: {rendered}"
            );
        }
    }
}

/// A real config with every key set, for mutation.
const VALID: &str = r#"{"version": 3, "extra_config": {"redis": {"connection_pools": [
  {"name": "cache", "address": "localhost:6379", "db": 8, "user_name": "app",
   "password": "pw-q7Zxhunter", "client_name": "gw", "pool_size": 20, "pool_timeout": "1.5s",
   "dial_timeout": "250ms", "conn_max_idle_time": "5m", "conn_max_life_time": "1h",
   "max_active_conns": 15, "min_idle_conns": 2, "max_idle_conns": 5, "max_retries": 4,
   "min_retry_backoff": "8ms", "max_retry_backoff": "512ms",
   "tls": {"allow_insecure_connections": false, "min_version": "TLS12", "max_version": "TLS13"},
   "opentelemetry": {"disable_metrics": true, "traces_static_attributes": [{"key": "k", "value": "v"}]}}],
  "clusters": [{"name": "shared", "addresses": ["10.0.0.1:6379", "[::1]:7000"], "max_redirects": 5}]},
  "plugin/redplug": {"counter": {"limit": 10}}}}"#;

/// One edit of a text: replace, insert or delete a byte.
fn mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    (any::<usize>(), 0u8..3, any::<u8>())
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_and_check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_real_configs_never_panic(edits in proptest::collection::vec(mutation(), 1..8)) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, kind, byte) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        load_and_check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_anywhere_never_panics(value in json_value(), place in 0u8..4) {
        let document = match place {
            0 => value,
            1 => json!({ "extra_config": value }),
            2 => json!({ "extra_config": { "redis": value } }),
            _ => json!({ "extra_config": { "redis": { "connection_pools": [value] } } }),
        };
        load_and_check(&document.to_string());
    }

    #[test]
    fn arbitrary_objects_under_extra_config_redis_never_panic(document in redis_config()) {
        load_and_check(&document.to_string());
    }

    #[test]
    fn durations_never_panic_and_round_trip(text in text()) {
        if let Ok(duration) = parse_duration(&text) {
            let printed = duration.to_string();
            let again: GoDuration = parse_duration(&printed)
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
            prop_assert_eq!(again, duration, "{:?} printed as {:?}", text, printed);
        }
    }
}

/// The valid config the mutations start from is valid, so they explore near real input.
#[test]
fn the_mutation_seed_is_a_valid_config() {
    let config = config::parse(VALID).expect("VALID parses");
    assert_eq!(config.redis.connection_pools.len(), 1);
    assert!(!format!("{config:?}").contains(SECRET_MARK));
}
