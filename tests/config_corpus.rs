//! A corpus of bad gateway configs: wrong types, huge numbers, negative sizes, bad durations,
//! unicode tricks in names and keys, duplicate names, missing and wrong TLS files. And the
//! secrets test: credentials in a config reach no error, report, `Debug` output or log.
//!
//! Each file in `tests/config_corpus/` is a whole gateway config whose top-level `"$expect"`
//! lists, in order, every problem the loader must report: the exact JSON path, a fragment of
//! the message, and (where given) the offending value exactly as the error shows it. Top-level
//! keys other than `extra_config` belong to the gateway, so the loader ignores `"$expect"`
//! and `"$comment"`, and `redplug check tests/config_corpus/<file>` shows the same problems.
//!
//! To add a case, write the file with `"$expect": []`, run this test with
//! `REDPLUG_CORPUS_BLESS=1` to fill in what the loader reports, then read the diff and cut
//! each message down to the fragment that matters.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use redplug_runtime::Runtime;
use redplug_runtime::config::{self, ConfigError, ConfigErrors};
use redplug_testkit::RedisServer;
use serde_json::{Map, Value, json};

mod support;

use support::Logs;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config_corpus");

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(CORPUS)
        .expect("tests/config_corpus exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// `"$expect"` of a corpus file.
/// The `"$expect"` list of a corpus file. Read on its own, so that files whose config part
/// serde_json's `Value` cannot hold (a number beyond any float, deep nesting) still work.
fn expected(text: &str) -> Vec<Map<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Expectations {
        #[serde(rename = "$expect")]
        expect: Value,
    }
    let document: Expectations =
        serde_json::from_str(text).expect("every corpus file has an \"$expect\" list");
    document
        .expect
        .as_array()
        .expect("every corpus file has an \"$expect\" list")
        .iter()
        .map(|item| {
            item.as_object()
                .expect("each expectation is an object")
                .clone()
        })
        .collect()
}

/// What differs between the errors reported and those expected; empty when they match.
fn differences(errors: &[ConfigError], expected: &[Map<String, Value>]) -> Vec<String> {
    let mut out = Vec::new();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    let wanted: Vec<&str> = expected
        .iter()
        .map(|e| e["path"].as_str().expect("path is a string"))
        .collect();
    if paths != wanted {
        out.push(format!("paths {paths:?}, expected {wanted:?}"));
        return out;
    }
    for (error, expected) in errors.iter().zip(expected) {
        let fragment = expected["message"].as_str().expect("message is a string");
        if !error.message.contains(fragment) {
            out.push(format!(
                "{}: message {:?} lacks {fragment:?}",
                error.path, error.message
            ));
        }
        if let Some(value) = expected.get("value") {
            let value = value.as_str().map(str::to_owned);
            if error.value != value {
                out.push(format!(
                    "{}: value {:?}, expected {value:?}",
                    error.path, error.value
                ));
            }
        }
    }
    out
}

/// The errors as a `"$expect"` list, for blessing a new case.
fn as_expectations(errors: &ConfigErrors) -> Value {
    errors
        .iter()
        .map(|error| json!({ "path": error.path, "message": error.message, "value": error.value }))
        .collect()
}

fn bless(file: &Path, mut document: Value, errors: &ConfigErrors) {
    document["$expect"] = as_expectations(errors);
    let text = serde_json::to_string_pretty(&document).unwrap();
    // Keep unicode tricks visible as escapes.
    let escaped: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' | '\n' => c.to_string(),
            c => c
                .encode_utf16(&mut [0; 2])
                .iter()
                .map(|unit| format!("\\u{unit:04x}"))
                .collect(),
        })
        .collect();
    fs::write(file, escaped + "\n").unwrap();
}

#[test]
fn every_bad_config_in_the_corpus_reports_exactly_its_problems() {
    let files = corpus_files();
    assert!(
        files.len() >= 40,
        "the corpus has only {} configs",
        files.len()
    );
    let blessing = std::env::var_os("REDPLUG_CORPUS_BLESS").is_some();
    let (mut failures, mut checked) = (Vec::new(), 0);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let errors = match config::load(file) {
            Ok(_) => {
                failures.push(format!("{name}: accepted, but it is a bad config"));
                continue;
            }
            Err(errors) => errors,
        };
        if blessing {
            let document: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} cannot be blessed, write it by hand: {e}"));
            bless(file, document, &errors);
            continue;
        }
        let expected = expected(&text);
        checked += expected.len();
        let problems = differences(errors.errors(), &expected);
        if !problems.is_empty() {
            failures.push(format!(
                "{name}:\n    {}\n    reported: {}",
                problems.join("\n    "),
                as_expectations(&errors)
            ));
        }
        // The rendered report names the file and leads every problem with its path.
        let report = errors.to_string();
        assert_eq!(errors.file(), Some(file.as_path()), "{name}");
        assert!(report.contains(&name), "{name}: {report}");
        for error in &errors {
            assert!(
                error.path.is_empty() || error.to_string().starts_with(&error.path),
                "{name}: {error}"
            );
        }
    }
    println!(
        "config corpus: {} bad configs, {checked} expected problems checked",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} corpus configs did not report what they expect:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Configs that are not a JSON object at all, which a file with an `"$expect"` key cannot
/// express: each is one problem for the file as a whole (empty path), or at the top level.
#[test]
fn text_that_is_not_a_config_object_is_one_clear_problem() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "",
            "the file is not valid JSON: EOF while parsing a value at line 1, column 0",
        ),
        ("{", "", "EOF while parsing an object at line 1, column 1"),
        (
            "{\"extra_config\": {},}",
            "",
            "trailing comma at line 1, column 21",
        ),
        ("// gateway\n{}", "", "JSON has no comments"),
        (
            "{\"extra_config\": {} # a note\n}",
            "",
            "JSON has no comments",
        ),
        ("{\"a\": NaN}", "", "expected value at line 1, column 7"),
        (
            "{\"extra_config\": {\"redis\": {\"x\": \"\\ud800\"}}}",
            "extra_config.redis",
            "cannot be read at line 1, column 34: a string holds an escape that is not valid",
        ),
        (
            "\u{feff}[]",
            "",
            "the file holds an array, but a gateway config is a JSON object",
        ),
        ("null", "", "the file holds null"),
        (
            "{\"extra_config\": {\"redis\": {}}, \"extra_config\": {}}",
            "extra_config",
            "appears twice in the same object (the second value is at line 1, column 49)",
        ),
        (
            "{\"extra_config\": []}",
            "extra_config",
            "is an array, but this key takes an object",
        ),
        (
            "{\"extra_config\": {\"redis\": {\"connection_pools\": [[]]}}}",
            "extra_config.redis.connection_pools[0]",
            "is an array, but this key takes an object",
        ),
        (
            "{\"extra_config\": {\"redis\": \"redis://localhost:6379\"}}",
            "extra_config.redis",
            "is a string",
        ),
    ];
    for (text, path, fragment) in cases {
        let errors = config::parse(text).expect_err(text);
        let errors = errors.errors();
        assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
        assert_eq!(errors[0].path, *path, "{text:?}: {errors:?}");
        assert!(
            errors[0].message.contains(fragment),
            "{text:?}: {:?} lacks {fragment:?}",
            errors[0].message
        );
    }
    println!("{} texts that are not config objects checked", cases.len());
}

// ---------------------------------------------------------------------------------------------
// Secrets

const USER: &str = "gw-user-5e1f";
const PASSWORD: &str = "S3cret-pa55-9b1c";

/// Every log line of this test binary, captured at TRACE level.
fn captured_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = support::log_subscriber(&logs, tracing::Level::TRACE);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
    .clone()
}

/// Collects renderings and checks none shows the user name or the password.
#[derive(Default)]
struct Renderings(Vec<(String, String)>);

impl Renderings {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        let (what, text) = (what.into(), text.into());
        assert!(!text.is_empty(), "{what} rendered nothing");
        self.0.push((what, text));
    }

    fn error(&mut self, what: &str, error: &(dyn std::error::Error + 'static)) {
        self.add(format!("{what} (Display)"), error.to_string());
        self.add(format!("{what} (Debug)"), format!("{error:?}"));
        let mut source = error.source();
        while let Some(cause) = source {
            self.add(format!("{what} (cause)"), format!("{cause} / {cause:?}"));
            source = cause.source();
        }
    }

    fn assert_clean(&self) {
        for (what, text) in &self.0 {
            for secret in [USER, PASSWORD] {
                assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
            }
        }
    }
}

/// Credentials in every place of a config a user might put them, each next to a mistake.
fn configs_with_credentials(address: &str) -> Vec<(&'static str, Value)> {
    let url = format!("redis://{USER}:{PASSWORD}@cache.internal:6379/0");
    let pool = |extra: Value| {
        let mut pool = json!({ "name": "cache", "address": address,
                               "user_name": USER, "password": PASSWORD });
        pool.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "extra_config": { "redis": { "connection_pools": [pool] } } })
    };
    vec![
        (
            "credentials beside a bad duration",
            pool(json!({ "dial_timeout": "5" })),
        ),
        (
            "password as a list",
            pool(json!({ "password": [PASSWORD] })),
        ),
        (
            "user_name as an object",
            pool(json!({ "user_name": { "name": USER } })),
        ),
        (
            "password as an object",
            pool(json!({ "password": { "value": PASSWORD } })),
        ),
        (
            "an address URL with credentials",
            pool(json!({ "address": url })),
        ),
        (
            "an address URL with spaces around it",
            pool(json!({ "address": format!(" {url} ") })),
        ),
        (
            "user and password before an address",
            pool(json!({ "address": format!("{USER}:{PASSWORD}@cache.internal:6379") })),
        ),
        (
            "a password before an address",
            pool(json!({ "address": format!("{PASSWORD}@cache.internal:6379") })),
        ),
        (
            "a password in an address's query",
            pool(json!({ "address": format!("cache.internal:6379?password={PASSWORD}") })),
        ),
        (
            "a misspelt password key",
            pool(json!({ "passwd": PASSWORD, "usr": USER })),
        ),
        (
            "credentials inside tls",
            pool(json!({ "tls": { "password": PASSWORD, "user_name": USER } })),
        ),
        (
            "credentials at the redis level",
            json!({ "extra_config": { "redis": { "password": PASSWORD, "user_name": USER } } }),
        ),
        (
            "a cluster address URL",
            json!({ "extra_config": { "redis": { "clusters": [
                { "name": "c", "addresses": [url], "password": PASSWORD }
            ] } } }),
        ),
        (
            "a cluster's addresses as one URL",
            json!({ "extra_config": { "redis": { "clusters": [
                { "name": "c", "addresses": url, "user_name": USER }
            ] } } }),
        ),
        (
            "a duplicate name",
            json!({ "extra_config": { "redis": { "connection_pools": [
                { "name": "cache", "address": address, "password": PASSWORD },
                { "name": "cache", "address": address, "user_name": USER, "password": PASSWORD }
            ] } } }),
        ),
    ]
}

/// A config with a user name and password: every config error, the startup errors of a wrong
/// password (with `min_idle_conns`, and lazily on the first command), `Debug` of the parsed
/// config, the CLI's `check --connect` report in text and JSON, and every log line at TRACE
/// level; neither the user name nor the password appears in any of them.
#[test]
fn credentials_appear_in_no_error_report_debug_output_or_log() {
    let logs = captured_logs();
    let server = RedisServer::builder()
        .acl_user(USER, "the-real-one")
        .start();
    let address = server.addr();
    let mut seen = Renderings::default();

    for (what, document) in configs_with_credentials(&address) {
        let errors = config::parse(&document.to_string()).expect_err(what);
        seen.error(what, &errors);
        for error in &errors {
            seen.add(
                format!("{what}: {}", error.path),
                format!("{error} / {error:?}"),
            );
        }
    }

    let wrong = json!({ "extra_config": { "redis": { "connection_pools": [
        { "name": "cache", "address": address, "user_name": USER, "password": PASSWORD,
          "min_idle_conns": 1 }
    ] } } });
    let parsed = config::parse(&wrong.to_string()).unwrap();
    seen.add("Debug of Config", format!("{parsed:?}"));
    seen.add("pretty Debug of Config", format!("{parsed:#?}"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let startup = Runtime::builder()
            .registrations([])
            .start_json(&wrong.to_string())
            .await
            .err()
            .expect("a wrong password stops startup with min_idle_conns");
        assert!(startup.to_string().contains("pool `cache`"), "{startup}");
        seen.error("StartupError for a wrong password", &startup);

        let mut lazy = wrong.clone();
        lazy["extra_config"]["redis"]["connection_pools"][0]["min_idle_conns"] = json!(0);
        let started = Runtime::builder()
            .registrations([])
            .start_json(&lazy.to_string())
            .await
            .expect("startup is lazy without min_idle_conns");
        seen.add(
            "Debug of the running config",
            format!("{:?}", started.config()),
        );
        let pool = started.selectors().pool("cache").unwrap();
        seen.add("Debug of the pool", format!("{pool:?} {:?}", pool.status()));
        let command = redis::cmd("PING")
            .query_async::<String>(&mut pool.clone())
            .await;
        let command = command.expect_err("a wrong password fails the first command");
        seen.error("a command's error", &command);
        let checkout = pool.checkout().await.expect_err("and every checkout");
        seen.error("a checkout's error", &checkout);
        started.shutdown().await;
    });
    drop(runtime);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("krakend.json");
    fs::write(&file, wrong.to_string()).unwrap();
    for format in ["text", "json"] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["redplug", "check", "--connect", "--format", format];
        let file = file.to_str().unwrap();
        redplug_runtime::cli::run_with(args.into_iter().chain([file]), &mut out, &mut err);
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        assert!(
            (out.clone() + &err).contains("check `user_name` and `password`"),
            "the report says the credentials were refused: {out}{err}"
        );
        seen.add(
            format!("redplug check --connect --format {format}"),
            out + &err,
        );
    }

    let logs = logs.text();
    assert!(
        logs.contains("redplug runtime shut down"),
        "the log capture works: {logs}"
    );
    seen.add("every log line", logs);
    seen.assert_clean();
    println!(
        "secrets: {} renderings checked (config errors, startup and command errors, Debug, \
         CLI reports, logs); no user name or password in any",
        seen.0.len()
    );
}
