//! `redplug check` and `redplug plugins`, run in-process through `cli::run_with` against the
//! example plugins (`examples/plugins`), with real Redis for `--connect`. The `redplug` binary
//! itself is exercised end to end in `examples/plugins/tests/bin.rs`.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::ExitCode;

use redplug_runtime::cli;
use redplug_testkit::RedisServer;
use serde_json::{Value, json};

// The plugins the CLI should see; this file never names them otherwise.
redplug::link!(redplug_example_plugins);

struct Outcome {
    code: ExitCode,
    stdout: String,
    stderr: String,
}

fn redplug(args: &[&str]) -> Outcome {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = cli::run_with(
        std::iter::once("redplug").chain(args.iter().copied()),
        &mut stdout,
        &mut stderr,
    );
    let outcome = Outcome {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    println!(
        "$ redplug {}\n{}{}",
        args.join(" "),
        outcome.stdout,
        outcome.stderr
    );
    outcome
}

fn config_file(config: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(config.to_string().as_bytes()).unwrap();
    file
}

/// A config with both pools the example plugins ask for, at `address`.
fn gateway(address: &str, eight: &str) -> Value {
    json!({
        "version": 3,
        "extra_config": {
            "redis": { "connection_pools": [
                { "name": eight, "address": address, "db": 8 },
                { "name": "ratelimit_counters", "address": address, "db": 1 }
            ] },
            "plugin/redplug": { "rate_limit": { "limit": 100, "window": "1m" } }
        }
    })
}

fn check_json(path: &str, extra: &[&str]) -> (Outcome, Value) {
    let mut args = vec!["check", path, "--format", "json"];
    args.extend_from_slice(extra);
    let outcome = redplug(&args);
    let report =
        serde_json::from_str(&outcome.stdout).expect("--format json writes one JSON document");
    (outcome, report)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_good_config_resolves_every_example_plugin() {
    let file = config_file(&gateway("localhost:6379", "redis_at_eight"));
    let out = redplug(&["check", file.path().to_str().unwrap()]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    for line in [
        "pool  redis_at_eight      localhost:6379  db 8",
        "redis  pool `redis_at_eight`      ok",
        "redis  pool `ratelimit_counters`  ok",
        "runs once, at the service level, with settings extra_config[\"plugin/redplug\"][\"rate_limit\"]",
        "ok: the config is valid and every required connection resolves",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("counter     redplug_example_plugins::counter::Counter")
    );
    assert!(out.stdout.contains("examples/plugins/src/counter.rs:"));
}

#[test]
fn a_misspelt_pool_name_fails_with_a_suggestion() {
    let file = config_file(&gateway("localhost:6379", "redis_at_eigth"));
    let out = redplug(&["check", file.path().to_str().unwrap()]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(
        out.stdout
            .contains("pool `redis_at_eight`      NOT CONFIGURED; did you mean `redis_at_eigth`?"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .starts_with("error: 1 plugin field names a Redis connection"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("plugin `counter`"), "{}", out.stderr);
    assert!(out.stderr.contains("field `redis`"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the closest configured name is `redis_at_eigth`"),
        "{}",
        out.stderr
    );
    // The other plugin still resolves, and says so.
    assert!(
        out.stdout.contains("pool `ratelimit_counters`  ok"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_cluster_asked_for_as_a_pool_is_named_as_such() {
    let file = config_file(&json!({ "extra_config": { "redis": {
        "connection_pools": [{ "name": "ratelimit_counters", "address": "localhost:6379" }],
        "clusters": [{ "name": "redis_at_eight", "addresses": ["localhost:7000"] }]
    } } }));
    let (out, report) = check_json(file.path().to_str().unwrap(), &[]);
    assert_eq!(out.code, ExitCode::FAILURE);
    let counter = &report["plugins"][0];
    assert_eq!(counter["name"], "counter");
    assert_eq!(counter["needs"][0]["resolved"], false);
    assert_eq!(counter["needs"][0]["configured_as"], "cluster");
    let problem = report["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("`redis_at_eight` is a cluster"),
        "{problem}"
    );
}

#[test]
fn an_invalid_config_lists_every_problem_with_its_path() {
    let file = config_file(&json!({ "extra_config": { "redis": { "connection_pools": [
        { "name": "redis_at_eight", "address": "localhost:6379", "dial_timeout": "5x" },
        { "name": "ratelimit_counters", "address": "localhost:6379", "pool_sise": 3 }
    ] } } }));
    let out = redplug(&["check", file.path().to_str().unwrap()]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(out.stdout.contains(": 2 problems"), "{}", out.stdout);
    assert!(
        out.stderr.contains(
            "extra_config.redis.connection_pools[0].dial_timeout: \"5x\" is not a duration"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("extra_config.redis.connection_pools[1].pool_sise: unknown key; did you mean `pool_size`?"),
        "{}",
        out.stderr
    );

    let (_, report) = check_json(file.path().to_str().unwrap(), &[]);
    assert_eq!(report["ok"], false);
    let paths: Vec<&str> = report["config_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "extra_config.redis.connection_pools[0].dial_timeout",
            "extra_config.redis.connection_pools[1].pool_sise"
        ]
    );
    assert_eq!(report["config_errors"][0]["value"], "\"5x\"");
    assert_eq!(report["plugins"], json!([]));
}

#[test]
fn a_missing_file_is_a_config_error() {
    let out = redplug(&["check", "/nonexistent/krakend.json"]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(
        out.stderr
            .contains("cannot read the config file `/nonexistent/krakend.json`"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_check_reports_plugins_needs_and_config() {
    let file = config_file(&gateway("localhost:6379", "redis_at_eight"));
    let path = file.path().to_str().unwrap();
    let (out, report) = check_json(path, &[]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    assert!(
        out.stderr.is_empty(),
        "json mode keeps stderr quiet: {}",
        out.stderr
    );
    assert_eq!(report["version"], 1);
    assert_eq!(report["config"], path);
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"], json!([]));
    assert_eq!(
        report["connections"][0],
        json!({ "kind": "pool", "name": "redis_at_eight", "addresses": ["localhost:6379"], "db": 8 })
    );
    assert!(
        report.get("connect").is_none(),
        "no `connect` without --connect"
    );

    let plugins = report["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter", "rate_limit"]);
    let rate_limit = &plugins[1];
    assert_eq!(
        rate_limit["type"],
        "redplug_example_plugins::rate_limit::RateLimit"
    );
    assert!(
        rate_limit["location"]["file"]
            .as_str()
            .unwrap()
            .ends_with("rate_limit.rs")
    );
    assert!(rate_limit["location"]["line"].as_u64().unwrap() > 0);
    assert_eq!(
        rate_limit["config"],
        json!({ "path": "extra_config[\"plugin/redplug\"][\"rate_limit\"]", "present": true })
    );
    assert_eq!(
        rate_limit["needs"],
        json!([{
            "field": "redis", "kind": "pool", "name": "ratelimit_counters", "optional": false,
            "resolved": true, "did_you_mean": null, "configured_as": null
        }])
    );
    assert_eq!(plugins[0]["config"]["present"], false);
}

/// `gateway` with endpoints that list the example plugins, one with settings of its own.
fn with_endpoints(mut config: Value, counter_at_backend: &str) -> Value {
    config["endpoints"] = json!([
        {"endpoint": "/v1/users/{id}",
         "extra_config": {"plugin/redplug": {"name": ["rate_limit"],
             "rate_limit": {"limit": 2, "key_prefix": "users"}}},
         "backend": [{"host": ["http://users:8080"], "url_pattern": "/users/{id}",
             "extra_config": {"plugin/redplug": {"name": [counter_at_backend]}}}]},
        {"endpoint": "/v1/status", "method": "HEAD",
         "extra_config": {"plugin/redplug": {"name": ["rate_limit"]}},
         "backend": [{"host": ["http://status:8080"], "url_pattern": "/status"}]}
    ]);
    config
}

#[test]
fn check_shows_each_endpoint_s_chain_and_the_settings_of_each_instance() {
    let config = with_endpoints(gateway("localhost:6379", "redis_at_eight"), "counter");
    let file = config_file(&config);
    let path = file.path().to_str().unwrap();
    let out = redplug(&["check", path]);
    assert_eq!(out.code, ExitCode::SUCCESS, "{}", out.stderr);
    for line in [
        "    runs at 2 places (see endpoints); places without settings of their own use \
         extra_config[\"plugin/redplug\"][\"rate_limit\"]",
        "2 endpoints:",
        "  GET /v1/users/{id}  endpoints[0]",
        "    rate_limit  settings endpoints[0].extra_config[\"plugin/redplug\"].rate_limit",
        "    backend 0   GET /users/{id} on http://users:8080",
        "      counter  no settings (the plugin's defaults)",
        "  HEAD /v1/status     endpoints[1]",
        "    rate_limit  settings extra_config[\"plugin/redplug\"][\"rate_limit\"]",
        "      no plugins",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing line `{line}` in:\n{}",
            out.stdout
        );
    }

    let (_, report) = check_json(path, &[]);
    assert_eq!(report["ok"], true);
    let plugins = report["plugins"].as_array().unwrap();
    assert_eq!(plugins[0]["runs"], json!({"service": false, "places": 1}));
    assert_eq!(plugins[1]["runs"], json!({"service": false, "places": 2}));
    assert_eq!(
        report["endpoints"][0],
        json!({
            "method": "GET", "endpoint": "/v1/users/{id}", "path": "endpoints[0]",
            "chain": [{"name": "rate_limit",
                       "settings": "endpoints[0].extra_config[\"plugin/redplug\"].rate_limit"}],
            "backends": [{"method": "GET", "hosts": ["http://users:8080"],
                          "url_pattern": "/users/{id}", "path": "endpoints[0].backend[0]",
                          "chain": [{"name": "counter", "settings": null}]}]
        })
    );
    assert_eq!(
        report["endpoints"][1]["chain"][0]["settings"],
        "extra_config[\"plugin/redplug\"][\"rate_limit\"]"
    );
}

#[test]
fn check_refuses_an_unknown_plugin_in_a_chain_and_bad_settings_with_their_paths() {
    let mut config = with_endpoints(gateway("localhost:6379", "redis_at_eight"), "countr");
    config["endpoints"][0]["extra_config"]["plugin/redplug"]["rate_limit"]["limit"] = json!("2");
    let file = config_file(&config);
    let path = file.path().to_str().unwrap();
    let out = redplug(&["check", path]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(out.stdout.contains(": 2 problems"), "{}", out.stdout);
    let (out, report) = check_json(path, &[]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert_eq!(
        report["config_errors"],
        json!([
            {"path": "endpoints[0].backend[0].extra_config[\"plugin/redplug\"].name[0]",
             "value": "\"countr\"",
             "message": "names no registered plugin; did you mean `counter`?"},
            {"path": "endpoints[0].extra_config[\"plugin/redplug\"].rate_limit.limit",
             "value": null,
             "message": "is not a valid config for plugin `rate_limit`: invalid type: string \"2\", expected u64"}
        ])
    );
    assert_eq!(report["endpoints"], json!([]));
}

#[test]
fn check_prints_the_config_s_warnings_and_still_passes() {
    let mut config = gateway("localhost:6379", "redis_at_eight");
    config["extra_config"]["redis"]["connection_pools"][0]["tls"] = json!({"min_version": "TLS10"});
    let file = config_file(&config);
    let path = file.path().to_str().unwrap();
    let out = redplug(&["check", path]);
    assert_eq!(out.code, ExitCode::SUCCESS, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "warning: extra_config.redis.connection_pools[0].tls.min_version: \"TLS10\""
        ),
        "{}",
        out.stderr
    );
    let (_, report) = check_json(path, &[]);
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("TLS 1.2"),
        "{warnings:?}"
    );
}

#[test]
fn config_for_an_unregistered_plugin_is_a_warning() {
    let mut config = gateway("localhost:6379", "redis_at_eight");
    config["extra_config"]["plugin/redplug"]["ratelimit"] = json!({ "limit": 1 });
    let file = config_file(&config);
    let out = redplug(&["check", file.path().to_str().unwrap()]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    assert!(
        out.stderr
            .starts_with("warning: extra_config[\"plugin/redplug\"][\"ratelimit\"]"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `rate_limit`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn connect_reports_the_latency_of_every_pool() {
    let server = RedisServer::start();
    let file = config_file(&gateway(&server.addr(), "redis_at_eight"));
    let path = file.path().to_str().unwrap();

    let (out, report) = check_json(path, &["--connect"]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    let pings = report["connect"].as_array().unwrap();
    assert_eq!(pings.len(), 2);
    for (ping, name) in pings.iter().zip(["redis_at_eight", "ratelimit_counters"]) {
        assert_eq!(ping["name"], name);
        assert_eq!(ping["kind"], "pool");
        assert_eq!(ping["ok"], true);
        assert!(ping["latency_ms"].as_f64().unwrap() >= 0.0, "{ping}");
        assert_eq!(ping["error"], Value::Null);
    }

    let out = redplug(&["check", path, "--connect"]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    let line = out
        .stdout
        .lines()
        .find(|line| line.contains("pool  redis_at_eight") && line.contains("ok"))
        .unwrap_or_else(|| panic!("no latency line in:\n{}", out.stdout));
    let ms = line
        .trim_end()
        .strip_suffix(" ms")
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    assert_eq!(
        ms.split('.').nth(1).map(str::len),
        Some(2),
        "two decimals: {line}"
    );
}

#[test]
fn connect_reports_a_pool_that_does_not_answer() {
    let server = RedisServer::start();
    let closed = format!("127.0.0.1:{}", closed_port());
    let mut config = gateway(&server.addr(), "redis_at_eight");
    config["extra_config"]["redis"]["connection_pools"][1]["address"] = closed.clone().into();
    let file = config_file(&config);
    let path = file.path().to_str().unwrap();

    let (out, report) = check_json(path, &["--connect", "--timeout", "3s"]);
    assert_eq!(out.code, ExitCode::FAILURE);
    let pings = report["connect"].as_array().unwrap();
    assert_eq!(
        pings[0]["ok"], true,
        "the good pool still answers: {}",
        pings[0]
    );
    assert_eq!(pings[1]["name"], "ratelimit_counters");
    assert_eq!(pings[1]["ok"], false);
    assert_eq!(pings[1]["latency_ms"], Value::Null);
    let error = pings[1]["error"].as_str().unwrap();
    assert!(
        error.contains(&closed),
        "the error names the address: {error}"
    );
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with("pool `ratelimit_counters`: "),
        "{problems:?}"
    );

    let out = redplug(&["check", path, "--connect", "--timeout", "3s"]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(
        out.stdout
            .contains("ratelimit_counters  FAILED  pool `ratelimit_counters`: "),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with("error: pool `ratelimit_counters`: ")
            && out.stderr.contains(&closed),
        "{}",
        out.stderr
    );
}

#[test]
fn plugins_lists_the_example_plugins_with_their_needs() {
    let out = redplug(&["plugins"]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    assert!(
        out.stdout.starts_with("2 plugins registered:\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rate_limit  redplug_example_plugins::rate_limit::RateLimit")
    );
    assert!(out.stdout.contains("examples/plugins/src/rate_limit.rs:"));
    assert!(
        out.stdout
            .contains("redis  pool `redis_at_eight`      required"),
        "{}",
        out.stdout
    );

    let out = redplug(&["plugins", "--format", "json"]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["version"], 1);
    let counter = &report["plugins"][0];
    assert_eq!(counter["name"], "counter");
    assert_eq!(counter["type"], "redplug_example_plugins::counter::Counter");
    assert!(
        counter["location"]["file"]
            .as_str()
            .unwrap()
            .ends_with("examples/plugins/src/counter.rs")
    );
    assert_eq!(
        counter["needs"],
        json!([{ "field": "redis", "kind": "pool", "name": "redis_at_eight", "optional": false }])
    );
    assert_eq!(report["plugins"][1]["name"], "rate_limit");
}

#[test]
fn bad_arguments_exit_with_2_and_help_with_0() {
    let out = redplug(&["check"]);
    assert_eq!(out.code, ExitCode::from(2));
    assert!(out.stderr.contains("<CONFIG>"), "{}", out.stderr);

    let out = redplug(&["check", "x.json", "--format", "yaml"]);
    assert_eq!(out.code, ExitCode::from(2));

    let out = redplug(&["check", "x.json", "--timeout", "5"]);
    assert_eq!(out.code, ExitCode::from(2));
    assert!(out.stderr.contains("has no unit"), "{}", out.stderr);

    let out = redplug(&["--help"]);
    assert_eq!(out.code, ExitCode::SUCCESS);
    assert!(
        out.stdout.contains("check") && out.stdout.contains("plugins"),
        "{}",
        out.stdout
    );
}

#[test]
fn connect_gives_up_on_a_server_that_never_answers() {
    // Accepts connections (the kernel does, into the backlog) and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let file = config_file(&json!({ "extra_config": { "redis": { "connection_pools": [
        { "name": "redis_at_eight", "address": address }
    ] } } }));
    let out = redplug(&[
        "check",
        file.path().to_str().unwrap(),
        "--connect",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(out.code, ExitCode::FAILURE);
    assert!(
        out.stderr
            .contains("error: pool `redis_at_eight`: no answer within 300ms"),
        "{}",
        out.stderr
    );
}

/// 300 pools against one server whose `maxclients` is 20: the check reaches them a few at a
/// time, so it does not fill the server itself, and every pool answers.
#[test]
fn connect_reaches_many_pools_without_filling_the_server() {
    let server = RedisServer::builder().arg("--maxclients", "20").start();
    let pools: Vec<Value> = (0..300)
        .map(|i| json!({ "name": format!("pool_{i}"), "address": server.addr() }))
        .collect();
    let file = config_file(&json!({ "extra_config": { "redis": { "connection_pools": pools } } }));
    let path = file.path().to_str().unwrap();
    let (outcome, report) = check_json(path, &["--connect"]);
    let pings = report["connect"].as_array().unwrap();
    let failed: Vec<&Value> = pings.iter().filter(|ping| ping["ok"] != true).collect();
    assert_eq!(pings.len(), 300);
    assert!(failed.is_empty(), "{failed:#?}");
    // The example plugins' own pools are not in this config; that is the only problem.
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].as_str().unwrap().contains("is not configured"));
    assert_ne!(outcome.code, ExitCode::SUCCESS);
}

/// With the server full, every pool that could not connect says that the server is at its
/// `maxclients` limit, not that it timed out, and the report sums it up once.
#[test]
fn connect_says_when_a_full_server_turned_pools_away() {
    let server = RedisServer::builder().arg("--maxclients", "3").start();
    // Fill the server: three connections that stay open for the whole check.
    let hogs: Vec<redis::Connection> = (0..3).map(|_| server.conn()).collect();
    let pools: Vec<Value> = (0..5)
        .map(|i| json!({ "name": format!("pool_{i}"), "address": server.addr() }))
        .collect();
    let file = config_file(&json!({ "extra_config": { "redis": { "connection_pools": pools } } }));
    let path = file.path().to_str().unwrap();
    let (outcome, report) = check_json(path, &["--connect"]);
    drop(hogs);
    let pings = report["connect"].as_array().unwrap();
    let errors: Vec<&str> = pings
        .iter()
        .map(|ping| ping["error"].as_str().unwrap_or(""))
        .collect();
    assert!(
        errors
            .iter()
            .all(|error| error.contains("max number of clients") && !error.contains("no answer")),
        "{errors:#?}"
    );
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|problem| problem
            .as_str()
            .unwrap()
            .starts_with("5 pools and clusters were turned away because their server is at its `maxclients` limit")),
        "{problems:#?}"
    );
    assert_ne!(outcome.code, ExitCode::SUCCESS);
}

#[test]
fn check_shows_a_pool_behind_sentinel_and_connect_reaches_its_master() {
    let set = redplug_testkit::RedisSentinelSet::start();
    let server = RedisServer::start();
    let mut config = gateway(&server.addr(), "redis_at_eight");
    config["extra_config"]["redis"]["connection_pools"][0] = json!({
        "name": "redis_at_eight",
        "db": 8,
        "sentinel": { "master_name": set.master_name(), "addresses": set.sentinel_addrs() }
    });
    let file = config_file(&config);
    let path = file.path().to_str().unwrap();

    let (out, report) = check_json(path, &["--connect"]);
    assert_eq!(out.code, ExitCode::SUCCESS, "{}{}", out.stdout, out.stderr);
    let pool = &report["connections"][0];
    assert_eq!(pool["sentinel_master"], set.master_name());
    assert_eq!(pool["addresses"], json!(set.sentinel_addrs()));
    assert_eq!(report["connect"][0]["ok"], true, "{}", report["connect"]);

    let out = redplug(&["check", path]);
    let line = out
        .stdout
        .lines()
        .find(|line| line.contains("redis_at_eight") && line.contains("via sentinels"))
        .unwrap_or_else(|| panic!("no sentinel pool line in:\n{}", out.stdout));
    assert!(
        line.contains(&format!("master `{}`", set.master_name())),
        "{line}"
    );

    // A master name the sentinels do not know: --connect says so, naming every sentinel.
    config["extra_config"]["redis"]["connection_pools"][0]["sentinel"]["master_name"] =
        json!("nosuch");
    let file = config_file(&config);
    let (out, report) = check_json(file.path().to_str().unwrap(), &["--connect"]);
    assert_ne!(out.code, ExitCode::SUCCESS);
    let error = report["connect"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("no sentinel named the master `nosuch`"),
        "{error}"
    );
    for addr in set.sentinel_addrs() {
        assert!(error.contains(&addr), "{error}");
    }
}
