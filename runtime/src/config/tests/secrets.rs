//! Credentials never reach `Debug`, `Display` or an error message, whatever shape they take.

use serde_json::json;

use super::*;

const SECRET: &str = "hunter2-s3cr3t";

#[track_caller]
fn assert_hidden(text: &str) {
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    assert!(
        !text.contains("hunter2"),
        "part of the secret leaked: {text}"
    );
}

#[test]
fn a_valid_config_hides_credentials_in_debug() {
    let config = parse_redis(json!({
        "connection_pools": [{"name": "p", "address": "a:1", "user_name": SECRET, "password": SECRET}],
        "clusters": [{"name": "c", "addresses": ["a:1"], "user_name": SECRET, "password": SECRET}]
    }))
    .unwrap();
    assert_hidden(&format!("{config:?}"));
    assert_hidden(&format!("{config:#?}"));
    let options = &config.redis.connection_pools[0].options;
    assert_eq!(options.password.as_ref().map(Secret::expose), Some(SECRET));
    assert_hidden(&format!("{}", options.password.as_ref().unwrap()));
}

#[test]
fn errors_around_credentials_never_show_them() {
    let errors = parse_redis(json!({
        "connection_pools": [
            // Wrong types: the message gives the type, not the value.
            {"name": "a", "address": "a:1", "password": [SECRET], "user_name": {"v": SECRET}},
            {"name": "b", "address": "a:1", "password": 12345678},
            // Misspelt keys: the value might be the password.
            {"name": "c", "address": "a:1", "pasword": SECRET, "passwd": SECRET},
            // A URL with credentials where host:port belongs.
            {"name": "d", "address": format!("redis://default:{SECRET}@cache:6379/0")},
            {"name": "e", "address": "a:1", "tls": {"password": SECRET}}
        ],
        "clusters": [
            {"name": "f", "addresses": format!("rediss://:{SECRET}@cache:6380")},
            {"name": "g", "addresses": [format!("redis://u:{SECRET}@x:1")]}
        ],
        // An object where a list belongs is summarised, not printed.
        "unknown": {"password": SECRET}
    }))
    .unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 10, "{messages:#?}");
    assert_hidden(&errors.to_string());
    assert_hidden(&format!("{errors:?}"));
    assert!(
        messages.iter().all(|m| !m.contains("12345678")),
        "{messages:#?}"
    );

    let find = |path: &str| errors.iter().find(|e| e.path.ends_with(path)).unwrap();
    assert_problem(
        find("connection_pools[0].password"),
        "extra_config.redis.connection_pools[0].password",
        "must be a string, but is an array; the value is not shown because it is a credential",
    );
    assert_eq!(find("connection_pools[1].password").value, None);
    assert_eq!(
        find("connection_pools[2].pasword").message,
        "unknown key; did you mean `password`?"
    );
    let url = find("connection_pools[3].address");
    assert!(url.message.contains("\"cache:6379\""), "{url}");
    assert_eq!(url.value.as_deref(), Some("\"redis://***@cache:6379/0\""));
}

#[test]
fn a_null_credential_is_reported_without_a_value() {
    let error = pool_problem(json!({"password": null}));
    assert_eq!(error.value, None);
    assert!(error.message.contains("is null"), "{error}");
}
