//! The test harness itself, against real `redis-server` processes: every capability that the
//! integration tests, benchmarks and examples rely on is proven here first.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use redis::AsyncCommands;
use redplug_testkit::{ClientAuth, RedisCluster, RedisServer, missing_program_message, wait_for};

/// Set in a child process that this binary spawns to run one test in a special environment.
const CHILD_ENV: &str = "REDPLUG_HARNESS_CHILD";

fn query<T: redis::FromRedisValue>(
    con: &mut impl redis::ConnectionLike,
    cmd: &mut redis::Cmd,
) -> T {
    cmd.query(con).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == test)
}

/// Runs `test` of this binary in a child process with `env` applied.
fn run_child(test: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().expect("path of the test binary"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the test binary as a child")
}

fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether a process id still exists, zombie or not.
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn server_starts_on_loopback_and_serves_commands() {
    let server = RedisServer::start();
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_ne!(server.port(), 6379, "must never be the system redis");

    let mut con = server.conn();
    assert_eq!(query::<String>(&mut con, &mut redis::cmd("PING")), "PONG");
    query::<()>(&mut con, redis::cmd("SET").arg("greeting").arg("hello"));
    assert_eq!(
        query::<String>(&mut con, redis::cmd("GET").arg("greeting")),
        "hello"
    );

    // Private dir, no persistence by default.
    let dir: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("dir"));
    assert_eq!(Path::new(&dir[1]), server.dir().canonicalize().unwrap());
    let aof: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("appendonly"));
    assert_eq!(aof[1], "no");
    let save: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("save"));
    assert_eq!(save[1], "");
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn async_connections_work_in_tokio_tests() {
    let server = RedisServer::start();
    let mut con = server.async_conn().await;
    let () = con.set("n", 41).await.unwrap();
    let n: i64 = con.incr("n", 1).await.unwrap();
    assert_eq!(n, 42);

    // The plain client works async too, e.g. for code under test that takes a `redis::Client`.
    let mut other = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n: i64 = other.get("n").await.unwrap();
    assert_eq!(n, 42);
}

#[test]
fn extra_arguments_reach_the_server() {
    let server = RedisServer::builder().arg("--maxclients", "5").start();
    let mut con = server.conn();
    let max: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("maxclients"));
    assert_eq!(max[1], "5");
}

#[test]
fn servers_are_private_to_each_test() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    query::<()>(&mut a.conn(), redis::cmd("SET").arg("only-in-a").arg(1));
    assert!(!query::<bool>(
        &mut b.conn(),
        redis::cmd("EXISTS").arg("only-in-a")
    ));
}

#[test]
fn stop_breaks_connections_and_restart_comes_back_on_the_same_port() {
    let server = RedisServer::start();
    let port = server.port();
    let mut con = server.conn();
    query::<()>(&mut con, redis::cmd("SET").arg("k").arg("v"));

    server.stop();
    assert!(!server.is_running());
    assert!(
        redis::cmd("PING").query::<String>(&mut con).is_err(),
        "old connection still works"
    );
    assert!(
        server
            .client()
            .get_connection_with_timeout(Duration::from_secs(1))
            .is_err()
    );
    server.stop(); // idempotent

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let mut con = server.conn();
    assert_eq!(query::<String>(&mut con, &mut redis::cmd("PING")), "PONG");
    // Without persistence the data is gone.
    assert!(!query::<bool>(&mut con, redis::cmd("EXISTS").arg("k")));
}

#[test]
fn a_server_that_exits_on_its_own_is_seen_as_stopped_and_can_be_restarted() {
    let server = RedisServer::start();
    let mut con = server.conn();
    // The connection drops as the server exits, so the reply is an error.
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut con);
    wait_for("the server to exit", Duration::from_secs(5), || {
        if server.is_running() {
            Err("still running")
        } else {
            Ok(())
        }
    });
    assert_eq!(server.pid(), None);
    server.restart();
    assert_eq!(
        query::<String>(&mut server.conn(), &mut redis::cmd("PING")),
        "PONG"
    );
}

#[test]
fn persistence_keeps_data_across_restarts() {
    let server = RedisServer::builder().persistence(true).start();
    let mut con = server.conn();
    let aof: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("appendfsync"));
    assert_eq!(aof[1], "always");
    for _ in 0..3 {
        query::<i64>(&mut con, redis::cmd("INCR").arg("count"));
    }

    // Killed like a crash, not shut down: fsync-always means nothing acknowledged is lost.
    server.restart();
    assert_eq!(
        query::<i64>(&mut server.conn(), redis::cmd("GET").arg("count")),
        3
    );

    server.stop_for(Duration::from_millis(50));
    let mut con = server.conn();
    query::<i64>(&mut con, redis::cmd("INCR").arg("count"));
    assert_eq!(query::<i64>(&mut con, redis::cmd("GET").arg("count")), 4);
}

#[tokio::test]
async fn restart_after_keeps_the_server_down_while_the_test_runs() {
    let server = RedisServer::builder().persistence(true).start();
    let mut con = server.async_conn().await;
    let () = con.set("k", "before").await.unwrap();

    let restart = server.restart_after(Duration::from_millis(300));
    assert!(!server.is_running());
    // The runtime is free meanwhile: this connect attempt runs (and fails) while the server is down.
    let down = server.client().get_multiplexed_async_connection().await;
    assert!(down.is_err() || !restart.is_finished());
    restart.wait().await;

    assert!(server.is_running());
    let mut con = server.async_conn().await;
    let value: String = con.get("k").await.unwrap();
    assert_eq!(value, "before");
}

#[test]
fn drop_kills_and_reaps_the_process_and_cancels_pending_restarts() {
    let server = RedisServer::start();
    let pid = server.pid().expect("running");
    let addr = server.addr();
    drop(server);
    assert!(
        !process_exists(pid),
        "redis-server {pid} survived its drop (or is a zombie)"
    );
    assert!(std::net::TcpStream::connect(&addr).is_err());

    let server = RedisServer::start();
    let _restart = server.restart_after(Duration::from_secs(3600));
    let start = std::time::Instant::now();
    drop(server);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "drop waited for the pending restart"
    );
}

#[test]
fn password_is_required_and_wrong_ones_are_rejected() {
    let password = "p@ss word:/\"quoted\"";
    let server = RedisServer::builder().password(password).start();
    assert_eq!(server.password(), Some(password));
    assert_eq!(
        query::<String>(&mut server.conn(), &mut redis::cmd("PING")),
        "PONG"
    );

    let anonymous = redis::Client::open(format!("redis://{}", server.addr())).unwrap();
    let mut con = anonymous.get_connection().unwrap();
    let err = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");

    let wrong = redis::Client::open(format!("redis://:wrong@{}", server.addr())).unwrap();
    let err = wrong.get_connection().map(drop).unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}

#[test]
fn acl_users_log_in_with_their_password_only() {
    let server = RedisServer::builder().acl_user("app", "app-pass").start();
    let mut con = server
        .client_as("app", "app-pass")
        .get_connection()
        .unwrap();
    assert_eq!(
        query::<String>(&mut con, redis::cmd("ACL").arg("WHOAMI")),
        "app"
    );
    query::<()>(&mut con, redis::cmd("SET").arg("k").arg("v"));

    let err = server
        .client_as("app", "nope")
        .get_connection()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    let err = server
        .client_as("nobody", "app-pass")
        .get_connection()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}

fn install_crypto_provider() {
    // Already installed by another test in this process: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn tls_ping(url: &str, certs: redis::TlsCertificates) -> redis::RedisResult<String> {
    let client = redis::Client::build_with_tls(url, certs)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING").query_async(&mut con).await
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn tls_server_is_reachable_with_the_ca_only() {
    install_crypto_provider();
    let server = RedisServer::builder()
        .tls(ClientAuth::Off)
        .password("tls-pass")
        .start();
    let files = server.tls().expect("tls files");
    assert!(server.url().starts_with("rediss://"), "{}", server.url());

    // The helper client trusts the CA.
    let mut con = server.async_conn().await;
    let () = con.set("k", "over tls").await.unwrap();

    // So does a client given only the CA, connecting by IP and by name.
    let ca_only = || redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(read(&files.ca_cert)),
    };
    assert_eq!(tls_ping(&server.url(), ca_only()).await.unwrap(), "PONG");
    let by_name = format!("rediss://:tls-pass@localhost:{}", server.port());
    assert_eq!(tls_ping(&by_name, ca_only()).await.unwrap(), "PONG");

    // A client trusting an unrelated CA refuses the server.
    let wrong_ca = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(read(&files.other_ca_cert)),
    };
    assert!(tls_ping(&server.url(), wrong_ca).await.is_err());

    // Plain text is not served on the TLS port.
    let plain = redis::Client::open(format!("redis://:tls-pass@{}", server.addr())).unwrap();
    let con = plain.get_connection_with_timeout(Duration::from_secs(2));
    assert!(
        con.and_then(|mut con| redis::cmd("PING").query::<String>(&mut con))
            .is_err()
    );

    // And redis-cli speaks TLS with the generated files.
    let cli = Command::new("redis-cli")
        .args(["--tls", "-p", &server.port().to_string(), "--cacert"])
        .arg(&files.ca_cert)
        .env("REDISCLI_AUTH", "tls-pass")
        .args(["GET", "k"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "over tls",
        "{}",
        combined(&cli)
    );
}

#[tokio::test]
async fn tls_with_required_client_certs_refuses_clients_without_a_trusted_one() {
    install_crypto_provider();
    let server = RedisServer::builder().tls(ClientAuth::Required).start();
    let files = server.tls().unwrap();
    let url = server.url();

    let with_cert = files.redis_certificates(true);
    assert_eq!(tls_ping(&url, with_cert).await.unwrap(), "PONG");

    let without_cert = files.redis_certificates(false);
    assert!(
        tls_ping(&url, without_cert).await.is_err(),
        "a client without a certificate got in"
    );

    let untrusted = redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: read(&files.other_client_cert),
            client_key: read(&files.other_client_key),
        }),
        root_cert: Some(read(&files.ca_cert)),
    };
    assert!(
        tls_ping(&url, untrusted).await.is_err(),
        "a certificate from another CA got in"
    );
}

#[tokio::test]
async fn tls_with_optional_client_certs_admits_clients_without_one() {
    install_crypto_provider();
    let server = RedisServer::builder().tls(ClientAuth::Optional).start();
    let files = server.tls().unwrap();
    assert_eq!(
        tls_ping(&server.url(), files.redis_certificates(false))
            .await
            .unwrap(),
        "PONG"
    );
    assert_eq!(
        tls_ping(&server.url(), files.redis_certificates(true))
            .await
            .unwrap(),
        "PONG"
    );
}

#[tokio::test]
async fn three_master_cluster_serves_keys_on_every_node() {
    let cluster = RedisCluster::start(3, 0);
    assert_eq!(cluster.masters(), vec![0, 1, 2]);
    for i in 0..3 {
        let info: String = query(
            &mut cluster.node(i).conn(),
            redis::cmd("CLUSTER").arg("INFO"),
        );
        assert!(info.contains("cluster_state:ok"), "{info}");
    }

    let mut con = cluster.client().get_async_connection().await.unwrap();
    for i in 0..20 {
        let () = con.set(format!("key:{i}"), i).await.unwrap();
    }

    // Our slot computation and owner lookup agree with the server.
    for i in 0..20 {
        let key = format!("key:{i}");
        let owner = cluster.node(cluster.node_for_key(&key));
        let mut node = owner.conn();
        let slot: u16 = query(&mut node, redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key));
        assert_eq!(RedisCluster::slot_for_key(&key), slot);
        assert_eq!(query::<i64>(&mut node, redis::cmd("GET").arg(&key)), i);
    }

    // redis-cli, following redirects from a node that does not own the key, reads it too.
    let owner = cluster.node_for_key("key:7");
    let other = cluster.node((owner + 1) % 3);
    let cli = Command::new("redis-cli")
        .args(["-c", "-p", &other.port().to_string(), "GET", "key:7"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "7",
        "{}",
        combined(&cli)
    );
}

#[test]
fn replica_takes_over_when_its_master_dies() {
    let cluster = RedisCluster::start(3, 1);
    assert_eq!(cluster.nodes().len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);

    let key = "survivor";
    let owner = cluster.node_for_key(key);
    let replicas = cluster.replicas_of(owner);
    assert_eq!(replicas.len(), 1, "master {owner} should have one replica");
    let mut con = cluster.node(owner).conn();
    query::<()>(&mut con, redis::cmd("SET").arg(key).arg("still here"));
    let acked: i64 = query(&mut con, redis::cmd("WAIT").arg(1).arg(5000));
    assert_eq!(acked, 1, "the write did not reach the replica");

    assert_eq!(cluster.kill_master_owning(key), owner);
    assert!(!cluster.node(owner).is_running());
    cluster.wait_for_ok();

    let new_owner = cluster.node_for_key(key);
    assert_eq!(
        new_owner, replicas[0],
        "the replica of the dead master took over"
    );
    let role: Vec<redis::Value> =
        query(&mut cluster.node(new_owner).conn(), &mut redis::cmd("ROLE"));
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
    let value: String = query(
        &mut cluster.node(new_owner).conn(),
        redis::cmd("GET").arg(key),
    );
    assert_eq!(value, "still here");
    assert_eq!(cluster.masters().len(), 3);

    // The old master comes back as a replica of its successor.
    cluster.restart_node(owner);
    cluster.wait_for_ok();
    assert_eq!(cluster.replicas_of(new_owner), vec![owner]);
}

#[test]
fn cluster_with_password_requires_it_on_every_node() {
    let cluster = RedisCluster::builder()
        .masters(3)
        .password("cluster-pass")
        .start();
    let mut con = cluster.client().get_connection().unwrap();
    query::<()>(&mut con, redis::cmd("SET").arg("k").arg("v"));
    assert_eq!(query::<String>(&mut con, redis::cmd("GET").arg("k")), "v");
    let anonymous = redis::Client::open(format!("redis://{}", cluster.node(0).addr())).unwrap();
    let err = redis::cmd("PING")
        .query::<String>(&mut anonymous.get_connection().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

#[test]
fn missing_redis_server_fails_with_install_instructions() {
    const TEST: &str = "missing_redis_server_fails_with_install_instructions";
    if is_child(TEST) {
        // PATH is empty here: starting a server must panic, not skip.
        let _server = RedisServer::start();
        unreachable!("a server started without redis-server on PATH");
    }
    let output = run_child(TEST, &[("PATH", "")]);
    let text = combined(&output);
    assert!(!output.status.success(), "child passed:\n{text}");
    assert!(
        text.contains(&missing_program_message("redis-server")),
        "{text}"
    );
    assert!(text.contains(
        "redis-server was not found on PATH; install it with `sudo apt-get install redis-server \
         redis-tools` (Debian/Ubuntu) or `brew install redis` (macOS)"
    ));
}

#[test]
fn failing_test_prints_the_server_log() {
    const TEST: &str = "failing_test_prints_the_server_log";
    if is_child(TEST) {
        let server = RedisServer::start();
        let _: String = query(&mut server.conn(), &mut redis::cmd("PING"));
        panic!("deliberate failure on {}", server.addr());
    }
    let output = run_child(TEST, &[]);
    let text = combined(&output);
    assert!(!output.status.success(), "child passed:\n{text}");
    assert!(text.contains("deliberate failure on 127.0.0.1:"), "{text}");
    assert!(text.contains("---- redis-server 127.0.0.1:"), "{text}");
    assert!(text.contains("Ready to accept connections"), "{text}");
}

#[test]
fn wait_for_polls_until_ready_and_names_what_timed_out() {
    let mut calls = 0;
    let n = wait_for("the third call", Duration::from_secs(5), || {
        calls += 1;
        if calls == 3 {
            Ok(calls)
        } else {
            Err("not yet")
        }
    });
    assert_eq!(n, 3);

    let panic = std::panic::catch_unwind(|| {
        wait_for::<(), _>("something impossible", Duration::from_millis(30), || {
            Err("still no")
        })
    })
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("waiting for something impossible"),
        "{message}"
    );
    assert!(message.contains("still no"), "{message}");
}

#[tokio::test]
async fn kill_clients_cuts_connections_and_flush_scripts_empties_the_script_cache() {
    let server = RedisServer::start();
    let mut con = server.async_conn().await;
    let sha1: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    assert!(server.has_script(&sha1));
    server.flush_scripts();
    assert!(!server.has_script(&sha1));

    // The helper's own connection is spared; ours is the one client to cut.
    assert_eq!(server.kill_clients(), 1);
    let after: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut con).await;
    assert!(
        after.is_err(),
        "the cut connection still answered: {after:?}"
    );
    // The server itself runs on, data and all.
    let mut fresh = server.async_conn().await;
    let pong: String = redis::cmd("PING").query_async(&mut fresh).await.unwrap();
    assert_eq!(pong, "PONG");
}
