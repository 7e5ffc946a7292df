//! The `redplug` binary end to end: the process a gateway operator runs, with the example
//! plugins linked in. The CLI's cases in detail are in the workspace's `tests/cli.rs`.

use std::io::Write as _;
use std::process::{Command, Output};

use redplug_testkit::RedisServer;
use serde_json::{Value, json};

fn redplug(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_redplug"))
        .args(args)
        .output()
        .expect("the redplug binary runs");
    println!(
        "$ redplug {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn config_file(address: &str, eight: &str) -> tempfile::NamedTempFile {
    let config = json!({
        "version": 3,
        "extra_config": { "redis": { "connection_pools": [
            { "name": eight, "address": address, "db": 8 },
            { "name": "ratelimit_counters", "address": address }
        ] } }
    });
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(config.to_string().as_bytes()).unwrap();
    file
}

#[test]
fn check_passes_a_good_config_and_connects() {
    let server = RedisServer::start();
    let file = config_file(&server.addr(), "redis_at_eight");
    let output = redplug(&["check", file.path().to_str().unwrap(), "--connect"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(output.stderr.is_empty());
    assert!(
        stdout.contains("redis  pool `redis_at_eight`      ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("redis  pool `ratelimit_counters`  ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pool  redis_at_eight      ok  "),
        "a latency: {stdout}"
    );
}

#[test]
fn check_fails_on_a_misspelt_pool_with_a_suggestion() {
    let file = config_file("localhost:6379", "redis_at_eigth");
    let output = redplug(&["check", file.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("plugin `counter`"), "{stderr}");
    assert!(
        stderr.contains("the closest configured name is `redis_at_eigth`"),
        "{stderr}"
    );
}

#[test]
fn plugins_lists_what_the_binary_links() {
    let output = redplug(&["plugins", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter", "rate_limit"]);
}

#[test]
fn plugins_and_check_list_the_rate_limit_script_with_its_sha1() {
    use redplug::Plugin;
    let sha1 = redplug_example_plugins::RateLimit::SCRIPTS[0].script.sha1();
    let expected = json!([{ "field": "admit", "path": "scripts/rate_limit.lua", "sha1": sha1 }]);

    let listed = redplug(&["plugins", "--format", "json"]);
    let report: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(report["plugins"][1]["scripts"], expected);
    assert_eq!(
        report["plugins"][0]["scripts"],
        json!([]),
        "counter has none"
    );

    let text = String::from_utf8(redplug(&["plugins"]).stdout).unwrap();
    let line =
        format!("    admit  script scripts/rate_limit.lua  sha1 {sha1}  (loaded at startup)");
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{text}"
    );

    let file = config_file("localhost:6379", "redis_at_eight");
    let checked = redplug(&["check", file.path().to_str().unwrap(), "--format", "json"]);
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["plugins"][1]["name"], "rate_limit");
    assert_eq!(report["plugins"][1]["scripts"], expected);
    let text =
        String::from_utf8(redplug(&["check", file.path().to_str().unwrap()]).stdout).unwrap();
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{text}"
    );
}
