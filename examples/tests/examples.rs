//! The examples, run as a user runs them, against real Redis.

use std::path::PathBuf;
use std::process::{Command, Output};

use redis::AsyncCommands;
use redplug_testkit::RedisServer;
use serde_json::json;

/// `target/<profile>/examples/<name>`: cargo builds examples before running tests.
fn example(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo test` (it builds examples)",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> (String, String) {
    run_with(name, args, None)
}

/// Runs an example; `redis` points the examples without a config argument at that server.
fn run_with(name: &str, args: &[&str], redis: Option<&RedisServer>) -> (String, String) {
    let mut command = Command::new(example(name));
    command.args(args);
    if let Some(server) = redis {
        command.env("REDPLUG_EXAMPLE_REDIS", server.addr());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the example runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(
        status.success(),
        "{name} failed ({status}):\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn counter_config(address: &str) -> tempfile::NamedTempFile {
    let config = json!({
        "version": 3,
        "extra_config": { "redis": { "connection_pools": [
            { "name": "redis_at_eight", "address": address, "db": 8 }
        ] } }
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config.to_string()).unwrap();
    file
}

#[tokio::test]
async fn counter_counts_responses_per_x_id_in_db_8() {
    let server = RedisServer::start();
    let config = counter_config(&server.addr());
    let (stdout, _) = run("counter", &[config.path().to_str().unwrap()]);
    println!("{stdout}");
    assert!(
        stdout.contains(&format!("using the Redis at {}", server.addr())),
        "{stdout}"
    );
    assert!(
        stdout.contains("test:from-resp-modifier:alice = 4 (+4 this run)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test:from-resp-modifier:bob = 2 (+2 this run)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test:from-resp-modifier:carol = 1 (+1 this run)"),
        "{stdout}"
    );

    // The counters really are in db 8 of that server, not in db 0.
    let mut conn = server.async_conn().await;
    let in_db0: Option<i64> = conn.get("test:from-resp-modifier:alice").await.unwrap();
    let () = redis::cmd("SELECT")
        .arg(8)
        .query_async(&mut conn)
        .await
        .unwrap();
    let in_db8: Option<i64> = conn.get("test:from-resp-modifier:alice").await.unwrap();
    assert_eq!((in_db0, in_db8), (None, Some(4)));

    // A second run adds to the same counters.
    let (again, _) = run("counter", &[config.path().to_str().unwrap()]);
    assert!(
        again.contains("test:from-resp-modifier:alice = 8 (+4 this run)"),
        "{again}"
    );
}

#[test]
fn counter_starts_a_private_server_when_nothing_answers() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let config = counter_config(&address);
    let (stdout, _) = run("counter", &[config.path().to_str().unwrap()]);
    assert!(
        stdout.contains(&format!(
            "nothing answers at {address}; started a private redis-server"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("test:from-resp-modifier:alice = 4 (+4 this run)"),
        "{stdout}"
    );
}

#[test]
fn rate_limit_answers_429_after_three_requests_per_client() {
    let server = RedisServer::start();
    let (stdout, _) = run_with("rate_limit", &[], Some(&server));
    println!("{stdout}");
    for line in [
        "tenant-a request 3: 200 OK",
        "tenant-a request 4: 429 Too Many Requests (retry after 60s)",
        "tenant-a request 5: 429 Too Many Requests",
        "tenant-b request 2: 200 OK",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

#[test]
fn gateway_runs_plugins_around_a_real_http_backend() {
    let server = RedisServer::start();
    let (stdout, _) = run_with("gateway", &[], Some(&server));
    println!("{stdout}");
    assert!(
        stdout.contains("statuses: [200, 200, 200, 429, 200]"),
        "{stdout}"
    );
    // Alice's fourth request was refused before the backend, so it was not counted.
    let counters: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test:from-resp-modifier:"))
        .collect();
    assert_eq!(counters.len(), 2, "{stdout}");
    assert!(
        counters[0].ends_with(" = 3") && counters[1].ends_with(" = 1"),
        "{counters:?}"
    );
}

#[tokio::test]
async fn endpoints_runs_each_place_with_its_own_settings() {
    let server = RedisServer::start();
    let (stdout, _) = run_with("endpoints", &[], Some(&server));
    println!("{stdout}");
    for line in [
        "GET /v1/users/{id}  (endpoint chain: [\"rate_limit\"])",
        "backend 0: POST http://127.0.0.1:8080/__debug/orders  (chain: [\"counter\"])",
        "backend 0: GET http://127.0.0.1:8080/__debug/status  (chain: [])",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    // Limits 2, 5 and the service-level 100, in file order.
    let statuses: Vec<&str> = stdout
        .lines()
        .filter_map(|line| {
            line.split_once(": ")
                .filter(|_| line.contains("6 requests"))
        })
        .map(|(_, statuses)| statuses)
        .collect();
    assert_eq!(
        statuses,
        [
            "[200, 200, 429, 429, 429, 429]",
            "[200, 200, 200, 200, 200, 429]",
            "[200, 200, 200, 200, 200, 200]",
        ]
    );
    // `counter` ran around the orders backend only, for the five requests let through.
    let mut conn = server.async_conn().await;
    let () = redis::cmd("SELECT")
        .arg(8)
        .query_async(&mut conn)
        .await
        .unwrap();
    let counted: Option<i64> = conn
        .get("test:from-resp-modifier:endpoints-example")
        .await
        .unwrap();
    assert_eq!(counted, Some(5));
}
