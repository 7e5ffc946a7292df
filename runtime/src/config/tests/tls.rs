//! `tls`: its keys, and the files it names, which are read when the config loads.

use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;

// The loader checks the PEM framing, not the DER inside, so small stand-ins are enough.
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
const PKCS8_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n";
const RSA_KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKC\n-----END RSA PRIVATE KEY-----\n";
const EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";

/// A directory holding the usual files under `certs/`.
fn certs() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    for (name, contents) in [
        ("ca.pem", CERT),
        ("client.pem", CERT),
        ("client.key", PKCS8_KEY),
        ("rsa.key", RSA_KEY),
        ("ec.key", EC_KEY),
        ("notes.txt", "just some text\n"),
        ("broken.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
        (
            "bad64.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        ),
    ] {
        std::fs::write(certs.join(name), contents).unwrap();
    }
    dir
}

/// Parses a pool with this `tls`, reading relative paths from `base`.
fn with_tls(tls: Value, base: &Path) -> Result<Config, ConfigErrors> {
    let pool = with_pool_defaults(json!({ "tls": tls }));
    let json = json!({"extra_config": {"redis": {"connection_pools": [pool]}}});
    parse_with_base(&json.to_string(), base)
}

fn tls_config(tls: Value, base: &Path) -> TlsConfig {
    let config = with_tls(tls, base).unwrap_or_else(|e| panic!("{e}"));
    config.redis.connection_pools[0]
        .options
        .tls
        .clone()
        .unwrap()
}

fn tls_problem(tls: Value, base: &Path) -> ConfigError {
    single(with_tls(tls, base).unwrap_err().into_vec())
}

fn tls_path(key: &str) -> String {
    format!("{POOL0}.tls.{key}")
}

#[test]
fn an_empty_object_turns_on_verified_tls() {
    let tls = tls_config(json!({}), Path::new(""));
    assert!(!tls.allow_insecure_connections);
    assert!(tls.ca_certs.is_empty());
    assert!(!tls.disable_system_ca_pool);
    assert!(tls.client_certs.is_empty());
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(tls.max_version, TlsVersion::Tls13);
}

#[test]
fn every_key_can_be_set_and_relative_paths_start_at_the_base() {
    let dir = certs();
    let tls = tls_config(
        json!({
            "allow_insecure_connections": true,
            "ca_certs": ["certs/ca.pem", dir.path().join("certs/ca.pem")],
            "disable_system_ca_pool": true,
            "client_certs": [
                {"certificate": "certs/client.pem", "private_key": "certs/client.key"},
                {"certificate": "certs/client.pem", "private_key": "certs/rsa.key"},
                {"certificate": "certs/client.pem", "private_key": "certs/ec.key"}
            ],
            "min_version": "TLS13",
            "max_version": "TLS1.3"
        }),
        dir.path(),
    );
    assert!(tls.allow_insecure_connections);
    assert!(tls.disable_system_ca_pool);
    assert_eq!(tls.ca_certs.len(), 2);
    assert_eq!(tls.ca_certs[0].path, Path::new("certs/ca.pem"));
    assert_eq!(tls.ca_certs[0].contents, CERT.as_bytes());
    assert_eq!(tls.client_certs.len(), 3);
    assert_eq!(tls.client_certs[1].private_key.contents, RSA_KEY.as_bytes());
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
}

#[test]
fn load_reads_relative_paths_from_the_config_files_directory() {
    let dir = certs();
    let pool = with_pool_defaults(json!({"tls": {"ca_certs": ["certs/ca.pem"]}}));
    let json = json!({"extra_config": {"redis": {"connection_pools": [pool]}}});
    let path = dir.path().join("krakend.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls = config.redis.connection_pools[0]
        .options
        .tls
        .as_ref()
        .unwrap();
    assert_eq!(tls.ca_certs[0].contents, CERT.as_bytes());
}

#[test]
fn a_missing_file_names_the_key_the_file_and_the_os_error() {
    let dir = certs();
    let error = tls_problem(
        json!({"ca_certs": ["certs/ca.pem", "certs/nope.pem"]}),
        dir.path(),
    );
    assert_problem(
        &error,
        &tls_path("ca_certs[1]"),
        "cannot be read (looked for `",
    );
    assert!(
        error
            .message
            .contains(&dir.path().join("certs/nope.pem").display().to_string())
    );
    let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    assert!(
        error.message.contains("os error 2") || error.message.contains(&os),
        "{error}"
    );
    assert_eq!(error.value.as_deref(), Some("\"certs/nope.pem\""));
}

#[test]
fn files_must_hold_the_right_kind_of_pem_block() {
    let dir = certs();
    let base = dir.path();
    let cases = [
        (
            json!({"ca_certs": ["certs/notes.txt"]}),
            "ca_certs[0]",
            "has no \"-----BEGIN CERTIFICATE-----\" block",
        ),
        (
            json!({"ca_certs": ["certs/client.key"]}),
            "ca_certs[0]",
            "holds a private key, not a certificate",
        ),
        (
            json!({"ca_certs": ["certs/broken.pem"]}),
            "ca_certs[0]",
            "is not valid PEM: a block has no \"-----END\" line",
        ),
        (
            json!({"ca_certs": ["certs/bad64.pem"]}),
            "ca_certs[0]",
            "is not valid PEM: a block's base64 is damaged",
        ),
        (
            json!({"client_certs": [{"certificate": "certs/client.key", "private_key": "certs/client.key"}]}),
            "client_certs[0].certificate",
            "wrong way round",
        ),
        (
            json!({"client_certs": [{"certificate": "certs/client.pem", "private_key": "certs/client.pem"}]}),
            "client_certs[0].private_key",
            "holds a certificate, not a private key",
        ),
        (
            json!({"client_certs": [{"certificate": "certs/client.pem", "private_key": "certs/notes.txt"}]}),
            "client_certs[0].private_key",
            "has no private key block",
        ),
    ];
    for (tls, key, fragment) in cases {
        assert_problem(&tls_problem(tls, base), &tls_path(key), fragment);
    }
}

#[test]
fn a_client_cert_needs_both_files() {
    let dir = certs();
    let error = tls_problem(
        json!({"client_certs": [{"certificate": "certs/client.pem"}]}),
        dir.path(),
    );
    assert_problem(
        &error,
        &tls_path("client_certs[0].private_key"),
        "required key is missing",
    );
    let json = json!({"client_certs": [{"certificate": "certs/client.pem", "key": "c.key"}]});
    let errors = with_tls(json, dir.path()).unwrap_err().into_vec();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        &tls_path("client_certs[0].key"),
        "did you mean `private_key`?",
    );
    assert_problem(
        &errors[1],
        &tls_path("client_certs[0].private_key"),
        "is missing",
    );
}

#[test]
fn only_tls_12_and_13_are_accepted() {
    for old in ["TLS10", "TLS11"] {
        let error = tls_problem(json!({ "min_version": old }), Path::new(""));
        assert_problem(
            &error,
            &tls_path("min_version"),
            "only TLS 1.2 and 1.3; use \"TLS12\" or \"TLS13\"",
        );
    }
    assert_problem(
        &tls_problem(json!({"max_version": "TLS14"}), Path::new("")),
        &tls_path("max_version"),
        "is not a TLS version",
    );
    let tls = tls_config(
        json!({"min_version": "TLS12", "max_version": "TLS12"}),
        Path::new(""),
    );
    assert_eq!(tls.max_version, TlsVersion::Tls12);
}

#[test]
fn min_version_cannot_be_newer_than_max_version() {
    let error = tls_problem(
        json!({"min_version": "TLS13", "max_version": "TLS12"}),
        Path::new(""),
    );
    assert_problem(
        &error,
        &tls_path("min_version"),
        "is newer than max_version (\"TLS12\")",
    );
}

#[test]
fn disabling_the_system_cas_needs_something_else_to_trust() {
    let error = tls_problem(json!({"disable_system_ca_pool": true}), Path::new(""));
    assert_problem(
        &error,
        &tls_path("disable_system_ca_pool"),
        "leaves nothing to trust",
    );
    let dir = certs();
    tls_config(
        json!({"disable_system_ca_pool": true, "ca_certs": ["certs/ca.pem"]}),
        dir.path(),
    );
    tls_config(
        json!({"disable_system_ca_pool": true, "allow_insecure_connections": true}),
        Path::new(""),
    );
}

#[test]
fn unknown_tls_keys_are_errors() {
    let error = tls_problem(json!({"ca_cert": []}), Path::new(""));
    assert_problem(&error, &tls_path("ca_cert"), "did you mean `ca_certs`?");
    let error = tls_problem(json!({"cipher_suites": [49199]}), Path::new(""));
    assert_problem(
        &error,
        &tls_path("cipher_suites"),
        "is not supported for Redis connections",
    );
    assert_problem(
        &tls_problem(json!({"allow_insecure_connections": 1}), Path::new("")),
        &tls_path("allow_insecure_connections"),
        "is a number, but this key takes true or false",
    );
    assert_problem(
        &tls_problem(json!(true), Path::new("")),
        &format!("{POOL0}.tls"),
        "is a boolean, but this key takes an object",
    );
}
