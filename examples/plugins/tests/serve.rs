//! `redplug serve` as an operator runs it: the `redplug` binary on a config, a backend server
//! and `redis-server` started here, driven over real HTTP. The quick start's config as it is
//! shipped, 256 MiB streamed each way through a headers-only chain with the gateway's memory
//! measured, and SIGTERM with a request in flight.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use bytes::Bytes;
use futures_util::StreamExt;
use redplug_testkit::RedisServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;

/// The `redplug serve` process, killed when dropped.
struct Gateway {
    child: Child,
    address: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
    /// Keeps the config file alive while the gateway runs.
    _config: tempfile::NamedTempFile,
}

impl Gateway {
    /// Starts `redplug serve` on `config` and waits for the line that says where it listens.
    fn start(config: &Value) -> Gateway {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_redplug"))
            .args(["serve", file.path().to_str().unwrap(), "--grace", "5s"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the redplug binary runs");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let address = first
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        println!("{}", first.trim());
        Gateway {
            child,
            address,
            stdout,
            _config: file,
        }
    }

    /// The gateway's resident memory now, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Replaces the config file the gateway was started with.
    fn rewrite_config(&self, config: &Value) {
        std::fs::write(self._config.path(), config.to_string()).unwrap();
    }

    /// Waits for the process to exit; its status and the rest of its stdout.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        (status, rest)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend on loopback: `/sink` reads and counts any body, `/source/{mib}` streams that many
/// MiB, `/slow` answers after two seconds.
async fn backend(received: Arc<AtomicU64>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/sink",
            axum::routing::post(move |body: Body| async move {
                let mut stream = body.into_data_stream();
                let mut total = 0u64;
                while let Some(chunk) = stream.next().await {
                    total += chunk.map(|c| c.len() as u64).unwrap_or(0);
                }
                received.store(total, Ordering::SeqCst);
                total.to_string()
            }),
        )
        .route(
            "/source/{mib}",
            axum::routing::get(|Path(mib): Path<u64>| async move {
                let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
                let chunks = futures_util::stream::iter(
                    (0..mib * 16).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                // With its length, so that the client can count the body's bytes as they come.
                let length = (mib * MIB).to_string();
                ([("content-length", length)], Body::from_stream(chunks))
            }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Sends `head` and reads the whole response: its status line and how many body bytes came
/// (every byte after the head).
async fn exchange(gateway: SocketAddr, head: String, body_mib: u64) -> (String, u64) {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'u'; MIB as usize];
    for _ in 0..body_mib {
        stream.write_all(&chunk).await.unwrap();
    }
    let mut buffer = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body = 0u64;
    loop {
        let read = stream.read(&mut buffer).await.unwrap();
        if read == 0 {
            break;
        }
        if body == 0 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            head.extend_from_slice(&buffer[..read]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = (head.len() - end - 4) as u64;
                head.truncate(end);
            }
        } else {
            body += read as u64;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, body)
}

fn gateway_config(redis: &RedisServer, backend: SocketAddr, endpoints: Value) -> Value {
    json!({
        "version": 3,
        "port": 0,
        "listen_ip": "127.0.0.1",
        "timeout": "60s",
        "host": [format!("http://{backend}")],
        "extra_config": { "redis": { "connection_pools": [
            { "name": "redis_at_eight", "address": redis.addr(), "db": 8 },
            { "name": "ratelimit_counters", "address": redis.addr() }
        ] } },
        "endpoints": endpoints,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_config_serves_as_shipped() {
    let redis = RedisServer::start();
    let mut config: Value = serde_json::from_str(include_str!("../../krakend.json")).unwrap();
    // As shipped, but on a free port, with the test's Redis: the backends are the gateway's
    // own /__debug/, so the host follows the port once it is known. Bind a port first.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    config["port"] = json!(port);
    config["host"] = json!([format!("http://127.0.0.1:{port}")]);
    for pool in config["extra_config"]["redis"]["connection_pools"]
        .as_array_mut()
        .unwrap()
    {
        pool["address"] = json!(redis.addr());
    }
    let gateway = Gateway::start(&config);
    assert_eq!(gateway.address.port(), port);
    let client = format!("quick-{}", std::process::id());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let head = format!(
            "GET /v1/users/42 HTTP/1.1\r\nhost: x\r\nx-client-id: {client}\r\nconnection: close\r\n\r\n"
        );
        statuses.push(exchange(gateway.address, head, 0).await.0);
    }
    println!("{statuses:#?}");
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 429 Too Many Requests"
        ]
    );
    let health = exchange(
        gateway.address,
        "GET /__health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
        0,
    )
    .await;
    assert_eq!(health.0, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_mib_stream_each_way_in_little_memory() {
    let redis = RedisServer::start();
    let received = Arc::new(AtomicU64::new(0));
    let backend = backend(received.clone()).await;
    let limit = json!({"name": ["rate_limit"], "rate_limit": {"limit": 1000}});
    let config = gateway_config(
        &redis,
        backend,
        json!([
            {"endpoint": "/upload", "method": "POST", "output_encoding": "no-op",
             "extra_config": {"plugin/redplug": limit},
             "backend": [{"url_pattern": "/sink", "encoding": "no-op"}]},
            {"endpoint": "/download", "output_encoding": "no-op",
             "extra_config": {"plugin/redplug": limit},
             "backend": [{"url_pattern": "/source/256", "encoding": "no-op",
                 "extra_config": {"plugin/redplug": {"name": ["counter"]}}}]},
        ]),
    );
    let gateway = Gateway::start(&config);
    // Warm up: one small request each way, so that the baseline has every buffer a request
    // allocates once.
    let small =
        "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\nconnection: close\r\n\r\n";
    assert_eq!(
        exchange(gateway.address, small.to_owned(), 1).await.0,
        "HTTP/1.1 200 OK"
    );
    let baseline = gateway.rss();

    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = {
        let peak = peak.clone();
        let pid = gateway.child.id();
        tokio::spawn(async move {
            loop {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find_map(|line| line.strip_prefix("VmRSS:"))
                        .and_then(|rest| {
                            rest.trim()
                                .trim_end_matches("kB")
                                .trim()
                                .parse::<u64>()
                                .ok()
                        })
                {
                    peak.fetch_max(kib * 1024, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let started = Instant::now();
    let upload = format!(
        "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        256 * MIB
    );
    let (status, _) = exchange(gateway.address, upload, 256).await;
    let up = started.elapsed();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        received.load(Ordering::SeqCst),
        256 * MIB,
        "the backend got every byte"
    );

    let started = Instant::now();
    let download = "GET /download HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned();
    let (status, bytes) = exchange(gateway.address, download, 0).await;
    let down = started.elapsed();
    sampling.abort();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(bytes, 256 * MIB, "the client got every byte");

    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    println!(
        "256 MiB up in {up:?} and down in {down:?}; gateway RSS {} MiB at rest, peak +{:.1} MiB",
        baseline / MIB,
        growth as f64 / MIB as f64
    );
    assert!(growth < 32 * MIB, "RSS grew by {} MiB", growth / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_shuts_down() {
    let redis = RedisServer::start();
    let backend = backend(Arc::new(AtomicU64::new(0))).await;
    let config = gateway_config(
        &redis,
        backend,
        json!([
            {"endpoint": "/slow", "output_encoding": "no-op",
             "extra_config": {"plugin/redplug": {"name": ["rate_limit"]}},
             "backend": [{"url_pattern": "/slow", "encoding": "no-op"}]},
        ]),
    );
    let gateway = Gateway::start(&config);
    let address = gateway.address;
    let in_flight = tokio::spawn(exchange(
        address,
        "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
        0,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    gateway.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(address).await.is_err(),
        "no new connections after SIGTERM"
    );
    let (status, _) = in_flight.await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "the request in flight finished");
    let (exit, rest) = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap();
    println!("exited {exit} after {:?}: {rest}", stopped.elapsed());
    assert!(exit.success(), "{exit}");
    assert!(rest.contains("redplug stopped"), "{rest}");
}

async fn status_of(gateway: SocketAddr, path: &str, client: &str) -> String {
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nx-client-id: {client}\r\nconnection: close\r\n\r\n"
    );
    exchange(gateway, head, 0).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_a_bad_one_changes_nothing() {
    let redis = RedisServer::start();
    let backend = backend(Arc::new(AtomicU64::new(0))).await;
    let endpoint = |path: &str, limit: u64| {
        json!({"endpoint": path, "output_encoding": "no-op", "input_headers": ["X-Client-Id"],
            "extra_config": {"plugin/redplug": {"name": ["rate_limit"],
                "rate_limit": {"limit": limit, "window": "1m", "key_prefix": path}}},
            "backend": [{"url_pattern": "/slow", "encoding": "no-op"}]})
    };
    let mut config = gateway_config(&redis, backend, json!([endpoint("/limited", 1)]));
    config["timeout"] = json!("5s");
    let gateway = Gateway::start(&config);
    let address = gateway.address;
    assert_eq!(status_of(address, "/limited", "a").await, "HTTP/1.1 200 OK");
    assert_eq!(
        status_of(address, "/limited", "a").await,
        "HTTP/1.1 429 Too Many Requests"
    );
    assert_eq!(
        status_of(address, "/added", "a").await,
        "HTTP/1.1 404 Not Found"
    );

    // A request is in flight (the backend takes two seconds) while the config changes.
    let in_flight = tokio::spawn(status_of(address, "/limited", "in-flight"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    config["endpoints"] = json!([endpoint("/limited", 3), endpoint("/added", 1)]);
    gateway.rewrite_config(&config);
    gateway.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(address, "/added", "probe").await != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < deadline, "the reload did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        in_flight.await.unwrap(),
        "HTTP/1.1 200 OK",
        "the request in flight finished"
    );
    let statuses = [
        status_of(address, "/limited", "b").await,
        status_of(address, "/limited", "b").await,
        status_of(address, "/limited", "b").await,
        status_of(address, "/limited", "b").await,
    ];
    assert_eq!(
        statuses.map(|s| s.split(' ').nth(1).unwrap_or_default().to_owned()),
        ["200", "200", "200", "429"],
        "the new limit of 3"
    );

    // A config the gateway cannot serve (two backends) leaves the running one alone.
    config["endpoints"][1]["backend"] = json!([{"url_pattern": "/a"}, {"url_pattern": "/b"}]);
    gateway.rewrite_config(&config);
    gateway.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(address, "/added", "c").await, "HTTP/1.1 200 OK");
    gateway.terminate();
    let (exit, _) = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap();
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_shows_the_operation_histogram_with_the_pool_s_name() {
    let redis = RedisServer::start();
    let backend = backend(Arc::new(AtomicU64::new(0))).await;
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut config = gateway_config(
        &redis,
        backend,
        json!([{"endpoint": "/limited", "output_encoding": "no-op",
            "extra_config": {"plugin/redplug": {"name": ["rate_limit"]}},
            "backend": [{"url_pattern": "/sink", "method": "POST", "encoding": "no-op"}]}]),
    );
    config["extra_config"]["telemetry/opentelemetry"] = json!({
        "service_name": "redplug-test",
        "exporters": {"prometheus": [
            {"name": "local_prometheus", "port": metrics_port, "listen_ip": "127.0.0.1",
             "process_metrics": true, "go_metrics": true}
        ]}
    });
    let gateway = Gateway::start(&config);
    for n in 0..5 {
        let status = status_of(gateway.address, "/limited", &format!("m{n}")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
    let metrics_address: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (status, _) = exchange(
        metrics_address,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_owned(),
        0,
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut stream = TcpStream::connect(metrics_address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("db_client_operation_duration"))
        .collect();
    println!("{}", lines.join("\n"));
    assert!(
        lines.iter().any(
            |line| line.starts_with("db_client_operation_duration_bucket{")
                && line.contains("db_client_connection_pool_name=\"ratelimit_counters\"")
                && line.contains("db_operation_name=")
                && line.contains("le=\"0.001\"")
        ),
        "no histogram for the pool in:\n{text}"
    );
    // rate_limit makes one round trip per request: five requests, five timings.
    let count: u64 = lines
        .iter()
        .filter(|line| line.starts_with("db_client_operation_duration_count{"))
        // Loading the script at startup is an operation of its own.
        .filter(|line| !line.contains("db_operation_name=\"SCRIPT\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(count, 5, "one timing per request's rate-limit call");
}
