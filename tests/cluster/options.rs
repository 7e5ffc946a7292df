//! Every `clusters[]` option, each checked from the servers' side: credentials and client name,
//! pool size and timeout, node handles, telemetry, startup failures and shutdown.

use super::*;

/// The options of the cluster `sessions`: every one set, logged in as `app`.
fn sessions_options() -> Value {
    json!({
        "user_name": "app",
        "password": "app-pass",
        "client_name": "redplug-sessions",
        "pool_size": 2,
        "pool_timeout": "300ms",
        "min_idle_conns": 1,
        "opentelemetry": { "traces_static_attributes": [{ "key": "team", "value": "edge" }] },
    })
}

/// A three-master cluster with a password and the ACL user `app`, and a runtime with two
/// clusters over it: `sessions` ([`sessions_options`]) and `quiet`, with telemetry off.
async fn options_cluster() -> (RedisCluster, Runtime) {
    let cluster = RedisCluster::builder()
        .password("s3cret")
        .acl_user("app", "app-pass")
        .start();
    let addrs = cluster.addrs();
    let quiet = json!({
        "user_name": "app",
        "password": "app-pass",
        "opentelemetry": { "disable_traces": true, "disable_metrics": true },
    });
    let runtime = start(vec![
        cluster_config("sessions", &addrs, sessions_options()),
        cluster_config("quiet", &addrs, quiet),
    ])
    .await;
    (cluster, runtime)
}

/// The node handle of `cluster` for the master that owns `key`.
async fn node(runtime: &Runtime, cluster: &str, key: &str) -> RedisPool {
    runtime
        .selectors()
        .cluster_node_for_key(cluster, key)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn credentials_and_client_name_reach_every_node() {
    bounded(async {
        let (cluster, runtime) = options_cluster().await;
        let sessions = handle(&runtime, "sessions");

        // user_name + password: ACL login as `app`; client_name: on every node's CLIENT LIST.
        let whoami: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut sessions.clone())
            .await
            .unwrap();
        assert_eq!(whoami, "app");
        for node in cluster.nodes() {
            let named = clients(node).await;
            assert!(
                named
                    .iter()
                    .any(|c| c.contains("name=redplug-sessions") && c.contains("user=app")),
                "{} has no client named redplug-sessions logged in as app: {named:#?}",
                node.addr()
            );
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn pool_size_and_pool_timeout_bound_exclusive_connections() {
    bounded(async {
        let (cluster, runtime) = options_cluster().await;
        let sessions = handle(&runtime, "sessions");

        // pool_size bounds exclusive connections; pool_timeout bounds the wait for one.
        let mut first = sessions.checkout().await.unwrap();
        let second = sessions.checkout().await.unwrap();
        let waited = Instant::now();
        let error = sessions.checkout().await.unwrap_err().to_string();
        let waited = waited.elapsed();
        assert!(
            error.contains("sessions") && error.contains("pool_timeout"),
            "{error}"
        );
        assert!(
            waited >= Duration::from_millis(280) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        drop(second);
        let third = sessions
            .checkout()
            .await
            .expect("a returned connection is handed out again");
        drop(third);

        // An exclusive connection runs blocking commands, and carries the client name too.
        let blocked = tokio::spawn(async move {
            let popped: (String, String) = redis::cmd("BLPOP")
                .arg("jobs")
                .arg(0)
                .query_async(&mut first)
                .await
                .unwrap();
            popped
        });
        let owner = cluster.node(cluster.node_for_key("jobs"));
        wait_for_async("BLPOP to block", Duration::from_secs(10), || async {
            let list = clients(owner).await;
            if list
                .iter()
                .any(|c| c.contains("cmd=blpop") && c.contains("name=redplug-sessions"))
            {
                Ok(())
            } else {
                Err("not blocked yet")
            }
        })
        .await;
        let (): () = sessions.clone().rpush("jobs", "job-1").await.unwrap();
        assert_eq!(
            blocked.await.unwrap(),
            ("jobs".to_owned(), "job-1".to_owned())
        );
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn node_handles_are_pools_with_the_cluster_s_options() {
    bounded(async {
        let (_cluster, runtime) = options_cluster().await;

        // Node handles are pools with the cluster's pool_size, name and credentials.
        let node = node(&runtime, "sessions", "jobs").await;
        assert_eq!(node.status().max_size, 2);
        // min_idle_conns: maintenance keeps one idle connection beside the shared one.
        wait_for_async("an idle node connection", Duration::from_secs(10), || {
            let status = node.status();
            async move {
                if status.idle >= 1 {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            }
        })
        .await;
        let whoami: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut node.clone())
            .await
            .unwrap();
        assert_eq!(whoami, "app");
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn spans_and_gauges_follow_the_opentelemetry_options() {
    let spans = SpanLog::global();
    // Node handles' maintenance publishes gauges from tasks on this (the test's only) thread.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    bounded(async {
        let (_cluster, runtime) = options_cluster().await;
        let sessions = handle(&runtime, "sessions");
        let node = node(&runtime, "sessions", "jobs").await;

        // opentelemetry: a span per command, with the static attributes, unless disabled.
        let (): () = sessions.clone().set("traced", 1).await.unwrap();
        let (): () = handle(&runtime, "quiet").set("untraced", 1).await.unwrap();
        let (): () = node.clone().set("{jobs}:traced", 1).await.unwrap();
        let seen = spans.spans();
        let ours: Vec<&String> = seen
            .iter()
            .filter(|s| s.starts_with("redis.command"))
            .collect();
        assert!(
            ours.iter()
                .any(|s| s.contains("db.client.connection.pool.name=sessions ")
                    && s.contains("db.operation.name=\"SET\"")
                    && s.contains("team=edge")),
            "{ours:#?}"
        );
        assert!(
            ours.iter()
                .any(|s| s.contains("db.client.connection.pool.name=sessions@")),
            "node handles are traced: {ours:#?}"
        );
        assert!(
            !ours
                .iter()
                .any(|s| s.contains("db.client.connection.pool.name=quiet")),
            "disable_traces: {ours:#?}"
        );
        // ... and connection gauges for node handles, unless disabled.
        let quiet_node = self::node(&runtime, "quiet", "jobs").await;
        let (): () = quiet_node.clone().set("{jobs}:quiet", 1).await.unwrap();
        let gauges = wait_for_async("node pool gauges", Duration::from_secs(10), || {
            let snapshot = snapshotter.snapshot().into_vec();
            async move {
                let pools: BTreeSet<String> = snapshot
                    .iter()
                    .flat_map(|(key, ..)| {
                        key.key()
                            .labels()
                            .map(|l| format!("{}={}", l.key(), l.value()))
                            .collect::<Vec<_>>()
                    })
                    .filter(|label| label.starts_with("db.client.connection.pool.name="))
                    .collect();
                if pools.iter().any(|p| p.contains("sessions@")) {
                    Ok(pools)
                } else {
                    Err(format!("{pools:?}"))
                }
            }
        })
        .await;
        assert!(
            !gauges.iter().any(|p| p.contains("quiet@")),
            "disable_metrics: {gauges:?}"
        );
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_stop_startup_naming_the_cluster() {
    bounded(async {
        let cluster = RedisCluster::builder()
            .password("s3cret")
            .acl_user("app", "app-pass")
            .start();
        // Wrong credentials stop the runtime at startup, naming the cluster and the cause.
        let error = refused_start(
            vec![cluster_config(
                "locked",
                &cluster.addrs(),
                json!({ "user_name": "app", "password": "wrong" }),
            )],
            "wrong credentials must not start",
        )
        .await;
        assert!(error.contains("cluster `locked`"), "{error}");
        assert!(
            error.contains("rejected the credentials") && error.contains("user_name"),
            "{error}"
        );
        println!("wrong credentials: {error}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_on_every_node() {
    bounded(async {
        let (cluster, runtime) = options_cluster().await;
        let sessions = handle(&runtime, "sessions");
        let (): () = sessions.clone().set("traced", 1).await.unwrap();
        let _node = node(&runtime, "sessions", "jobs").await;

        // Shutdown closes every connection this runtime opened on every node.
        runtime.shutdown().await;
        let error = get::<Option<String>>(&sessions, "traced")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
        for node in cluster.nodes() {
            wait_for_async(
                "our connections to close",
                Duration::from_secs(10),
                || async {
                    let left = clients(node)
                        .await
                        .into_iter()
                        .filter(|c| c.contains("name=redplug-sessions"))
                        .count();
                    if left == 0 {
                        Ok(())
                    } else {
                        Err(format!("{left} still open on {}", node.addr()))
                    }
                },
            )
            .await;
        }
    })
    .await;
}

#[tokio::test]
async fn startup_without_a_reachable_seed_fails_within_dial_timeout() {
    bounded(async {
        // Nothing listens here: refused at once.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        // This accepts connections and never answers: only dial_timeout ends the wait.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let started = Instant::now();
        let error = refused_start(
            vec![cluster_config(
                "nowhere",
                &[refused.clone(), silent_addr.clone()],
                json!({ "dial_timeout": "300ms" }),
            )],
            "no seed answers",
        )
        .await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(280),
            "the silent seed got its dial_timeout: {took:?}"
        );
        assert!(
            took < Duration::from_millis(300) + Duration::from_secs(2),
            "{took:?}"
        );
        assert!(error.contains("cluster `nowhere`"), "{error}");
        assert!(
            error.contains(&refused) && error.contains(&silent_addr),
            "every seed is named: {error}"
        );
        assert!(error.contains("dial_timeout"), "{error}");
        println!("no reachable seed: {error}");
        drop(silent);

        // A seed that is a plain server, not a cluster node: the server's answer is passed on.
        let plain = RedisServer::start();
        let error = refused_start(
            vec![cluster_config("notacluster", &[plain.addr()], json!({}))],
            "a plain server is no cluster",
        )
        .await;
        assert!(
            error.contains("cluster `notacluster`") && error.contains("cluster support disabled"),
            "{error}"
        );
    })
    .await;
}
