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

/// The warnings of a pool with this `tls`, which must load.
fn tls_warnings(tls: Value) -> Vec<ConfigWarning> {
    with_tls(tls, Path::new(""))
        .unwrap_or_else(|e| panic!("{e}"))
        .warnings
}

/// Asserts the path exactly and that the message holds every fragment.
#[track_caller]
fn assert_warning(warning: &ConfigWarning, path: &str, fragments: &[&str]) {
    assert_eq!(warning.path, path, "{warning}");
    for fragment in fragments {
        assert!(
            warning.message.contains(fragment),
            "warning {:?} lacks {fragment:?}",
            warning.message
        );
    }
}

#[test]
fn tls_10_and_11_load_as_tls_12_with_a_warning_that_says_so() {
    for (written, asked) in [
        ("TLS10", "TLS 1.0"),
        ("TLS1.0", "TLS 1.0"),
        ("TLS11", "TLS 1.1"),
        ("TLS1.1", "TLS 1.1"),
        ("SSL3.0", "SSL 3.0"),
    ] {
        let tls = json!({ "min_version": written });
        assert_eq!(
            tls_config(tls.clone(), Path::new("")).min_version,
            TlsVersion::Tls12
        );
        let warnings = tls_warnings(tls);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_warning(
            &warnings[0],
            &tls_path("min_version"),
            &[
                &format!("\"{written}\" asks for {asked}"),
                "rustls",
                "cannot speak",
                "TLS 1.2 is the minimum used instead",
            ],
        );
    }

    let tls = json!({"min_version": "TLS10", "max_version": "TLS11"});
    let loaded = tls_config(tls.clone(), Path::new(""));
    assert_eq!(
        (loaded.min_version, loaded.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls12)
    );
    let warnings = tls_warnings(tls);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_warning(&warnings[0], &tls_path("min_version"), &["TLS 1.0"]);
    assert_warning(
        &warnings[1],
        &tls_path("max_version"),
        &[
            "\"TLS11\" asks for TLS 1.1",
            "TLS 1.2 is the maximum used instead, so the server must speak TLS 1.2",
        ],
    );
}

#[test]
fn a_warning_reads_path_first_and_clusters_get_them_too() {
    let config = parse_redis(json!({"clusters": [
        with_cluster_defaults(json!({"tls": {"max_version": "TLS10"}}))
    ]}))
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = config.redis.clusters[0].options.tls.as_ref().unwrap();
    assert_eq!(tls.max_version, TlsVersion::Tls12);
    let warning = single_warning(config.warnings);
    let path = format!("{CLUSTER0}.tls.max_version");
    assert_eq!(warning.path, path);
    assert!(
        warning
            .to_string()
            .starts_with(&format!("{path}: \"TLS10\" asks for TLS 1.0")),
        "{warning}"
    );
}

#[test]
fn modern_settings_load_without_warnings() {
    let dir = certs();
    assert!(tls_warnings(json!({})).is_empty());
    let config = with_tls(
        json!({"min_version": "TLS12", "max_version": "TLS13", "ca_certs": ["certs/ca.pem"],
               "cipher_suites": [49195, 49199], "curve_preferences": [29, 23]}),
        dir.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
}

#[test]
fn versions_must_be_known_and_are_compared_as_written() {
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
    // Both load as TLS 1.2, but the range as written is empty.
    assert_problem(
        &tls_problem(
            json!({"min_version": "TLS11", "max_version": "TLS10"}),
            Path::new(""),
        ),
        &tls_path("min_version"),
        "is newer than max_version (\"TLS10\")",
    );
}

fn single_warning(mut warnings: Vec<ConfigWarning>) -> ConfigWarning {
    assert_eq!(warnings.len(), 1, "expected one warning: {warnings:#?}");
    warnings.remove(0)
}

/// The rustls configuration built from a pool's `tls` (insecure, so that no system
/// certificates are loaded).
fn built(tls: &TlsConfig) -> std::sync::Arc<rustls::ClientConfig> {
    let mut tls = tls.clone();
    tls.allow_insecure_connections = true;
    crate::net::tls::client_config(&tls).unwrap_or_else(|e| panic!("{e}"))
}

fn suite_ids(config: &rustls::ClientConfig) -> Vec<u16> {
    let suites = &config.crypto_provider().cipher_suites;
    suites.iter().map(|s| u16::from(s.suite())).collect()
}

#[test]
fn cipher_suites_narrow_tls_12_and_leave_tls_13_whole() {
    let tls = json!({"cipher_suites": [49199, 47, 4865, 52393, 65535, 49199]});
    let loaded = tls_config(tls.clone(), Path::new(""));
    assert_eq!(loaded.cipher_suites, Some(vec![49199, 52393]));
    assert_eq!(loaded.min_version, TlsVersion::Tls12);
    // TLS 1.3 in the provider's order, then the TLS 1.2 suites listed, in the provider's order.
    assert_eq!(
        suite_ids(&built(&loaded)),
        [0x1302, 0x1301, 0x1303, 0xcca9, 0xc02f],
        "TLS13_AES_256, TLS13_AES_128, TLS13_CHACHA, ECDSA_CHACHA, RSA_AES_128_GCM"
    );

    let warnings = tls_warnings(tls);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert_warning(
        &warnings[0],
        &tls_path("cipher_suites[1]"),
        &[
            "47 (TLS_RSA_WITH_AES_128_CBC_SHA) is not implemented by rustls",
            "not offered",
        ],
    );
    assert_warning(
        &warnings[1],
        &tls_path("cipher_suites[2]"),
        &[
            "4865 (TLS_AES_128_GCM_SHA256) is a TLS 1.3 suite",
            "every TLS 1.3 suite stays offered",
        ],
    );
    assert_warning(
        &warnings[2],
        &tls_path("cipher_suites[4]"),
        &["65535 (0xffff, a cipher suite Go has no name for)"],
    );
}

#[test]
fn cipher_suites_without_a_tls_12_suite_offer_only_tls_13() {
    // KrakenD's schema gives these three TLS 1.3 suites as the default list.
    let tls = json!({"cipher_suites": [4865, 4866, 4867, 10]});
    let loaded = tls_config(tls.clone(), Path::new(""));
    assert_eq!(loaded.cipher_suites, Some(vec![]));
    assert_eq!(
        (loaded.min_version, loaded.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
    assert_eq!(suite_ids(&built(&loaded)), [0x1302, 0x1301, 0x1303]);
    let warnings = tls_warnings(tls);
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    assert_warning(
        &warnings[3],
        &tls_path("cipher_suites[3]"),
        &["10 (TLS_RSA_WITH_3DES_EDE_CBC_SHA)"],
    );
    assert_warning(
        &warnings[4],
        &tls_path("cipher_suites"),
        &[
            "TLS 1.2 cannot be negotiated and only TLS 1.3 is offered",
            "49199 (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
        ],
    );

    // With TLS 1.3 already the minimum there is nothing to say about TLS 1.2.
    let warnings = tls_warnings(json!({"cipher_suites": [47], "min_version": "TLS13"}));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

#[test]
fn cipher_suites_that_leave_no_version_are_an_error() {
    for max in ["TLS12", "TLS11"] {
        let errors = with_tls(
            json!({"cipher_suites": [4865, 47], "max_version": max}),
            Path::new(""),
        )
        .unwrap_err()
        .into_vec();
        assert_problem(
            &single(errors),
            &tls_path("cipher_suites"),
            "leaves no TLS 1.2 cipher suite that rustls implements, and max_version rules out \
             TLS 1.3, so no connection could be made; add a TLS 1.2 suite from 49196",
        );
    }
}

#[test]
fn cipher_suites_and_curves_must_be_16_bit_numbers() {
    let cases = [
        (
            json!({"cipher_suites": 49199}),
            "cipher_suites",
            "is a number, but this key takes an array",
        ),
        (
            json!({"cipher_suites": ["49199"]}),
            "cipher_suites[0]",
            "write the number without quotes: 49199",
        ),
        (
            json!({"cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}),
            "cipher_suites[0]",
            "is the name of a cipher suite; this list takes Go's numbers: write 49199",
        ),
        (
            json!({"cipher_suites": [-1]}),
            "cipher_suites[0]",
            "is negative",
        ),
        (
            json!({"cipher_suites": [65536]}),
            "cipher_suites[0]",
            "the most this key accepts is 65535",
        ),
        (
            json!({"cipher_suites": [49199.5]}),
            "cipher_suites[0]",
            "is not a whole number",
        ),
        (
            json!({"curve_preferences": [null]}),
            "curve_preferences[0]",
            "is not allowed here",
        ),
        (
            json!({"curve_preferences": ["X25519"]}),
            "curve_preferences[0]",
            "is the name of a curve; this list takes Go's numbers: write 29",
        ),
        (
            json!({"curve_preferences": [1e10]}),
            "curve_preferences[0]",
            "is too large",
        ),
    ];
    for (tls, key, fragment) in cases {
        assert_problem(&tls_problem(tls, Path::new("")), &tls_path(key), fragment);
    }
}

#[test]
fn curve_preferences_order_the_key_exchange() {
    let tls = json!({"curve_preferences": [25, 24, 29, 4588, 24]});
    let loaded = tls_config(tls.clone(), Path::new(""));
    assert_eq!(loaded.curve_preferences, Some(vec![24, 29]));
    let config = built(&loaded);
    let groups: Vec<u16> = config
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| u16::from(g.name()))
        .collect();
    assert_eq!(groups, [24, 29]);

    let warnings = tls_warnings(tls);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_warning(
        &warnings[0],
        &tls_path("curve_preferences[0]"),
        &[
            "25 (P-521) is not implemented by rustls",
            "left out of the key exchange",
        ],
    );
    assert_warning(
        &warnings[1],
        &tls_path("curve_preferences[3]"),
        &["4588 (X25519MLKEM768)"],
    );
}

#[test]
fn curve_preferences_must_leave_a_curve() {
    assert_problem(
        &tls_problem(json!({"curve_preferences": [25, 4588]}), Path::new("")),
        &tls_path("curve_preferences"),
        "leaves no curve that rustls implements, so no key exchange is possible; list at least \
         one of 29 (X25519), 23 (P-256), 24 (P-384)",
    );
}

#[test]
fn empty_lists_keep_the_defaults() {
    let loaded = tls_config(
        json!({"cipher_suites": [], "curve_preferences": []}),
        Path::new(""),
    );
    assert_eq!(
        (&loaded.cipher_suites, &loaded.curve_preferences),
        (&None, &None)
    );
    let config = built(&loaded);
    assert_eq!(config.crypto_provider().cipher_suites.len(), 9);
    assert_eq!(config.crypto_provider().kx_groups.len(), 3);
}

#[test]
fn tls_objects_take_krakend_comment_keys() {
    let warnings = tls_warnings(json!({
        "@comment": "client TLS to the cache", "$note": 1, "_todo": [], "#why": {}
    }));
    assert!(warnings.is_empty());
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
    let error = tls_problem(json!({"public_key": "cert.pem"}), Path::new(""));
    assert_problem(&error, &tls_path("public_key"), "is a server-side setting");
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
