//! Masters that die, a cluster that is down for a while, and failover under load.

use super::*;

#[tokio::test]
async fn failover_is_survived_without_a_restart() {
    bounded(async {
        let cluster = RedisCluster::start(3, 1);
        let runtime = start(vec![cluster_config("ha", &cluster.addrs(), json!({}))]).await;
        let ha = handle(&runtime, "ha");
        let selectors = runtime.selectors();

        let key = "failover:{f}";
        let old_node = selectors
            .cluster_node_for_key("ha", key)
            .await
            .unwrap()
            .unwrap();
        // Written on a connection of its own, so that WAIT (which counts this connection's
        // writes) proves the replica has it before its master dies.
        let mut own = old_node.checkout().await.unwrap();
        let (): () = redis::cmd("SET")
            .arg(key)
            .arg("before")
            .query_async(&mut own)
            .await
            .unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut own)
            .await
            .unwrap();
        assert_eq!(acked, 1, "the replica acknowledged the write");
        drop(own);
        let killed = cluster.node_for_key(key);
        let survivor = key_on(
            &cluster,
            *cluster.masters().iter().find(|&&m| m != killed).unwrap(),
            "survivor",
        );

        let killed_at = Instant::now();
        cluster.kill_node(killed);
        // Other masters' slots do not notice.
        let (): () = ha.clone().set(&survivor, 1).await.unwrap();
        // The dead master's slots fail until its replica takes over, then work again, with the
        // data the replica had.
        let mut failures = Vec::new();
        let value = loop {
            match get::<Option<String>>(&ha, key).await {
                Ok(value) => break value,
                Err(error) => failures.push(error.to_string()),
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "commands did not recover within 30 s; last errors: {:?}",
                &failures[failures.len().saturating_sub(3)..]
            );
            // Each failed call already spent its retries; this only keeps the loop polite.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let recovered = killed_at.elapsed();
        println!(
            "failover: first successful command {recovered:?} after the master was killed \
             ({} failed calls before)",
            failures.len()
        );
        assert_eq!(value.as_deref(), Some("before"));

        // Once every node agrees on the new master, writes work too.
        cluster.wait_for_ok_async().await;
        let (): () = ha.clone().set(key, "after").await.unwrap();

        // The old node handle reports the dead node, and the selector moves to the new master.
        let error = get::<Option<String>>(&old_node, key).await.unwrap_err();
        assert!(error.to_string().contains("ha@"), "{error}");
        let promoted = cluster.node(cluster.node_for_key(key)).port();
        assert_ne!(promoted, cluster.node(killed).port());
        wait_for_async(
            "the selector to name the promoted replica",
            Duration::from_secs(10),
            || {
                let selectors = selectors.clone();
                async move {
                    let node = selectors
                        .cluster_node_for_key("ha", key)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("no owner")?;
                    let port = served_by(&node).await;
                    if port == promoted {
                        Ok(())
                    } else {
                        Err(format!("still {port}"))
                    }
                }
            },
        )
        .await;
        runtime.shutdown().await;
    })
    .await;
}

/// `INFO errorstats`' count of `code` replies on one node.
async fn error_count(con: &mut MultiplexedConnection, code: &str) -> u64 {
    let info: String = query(con, &["INFO", "errorstats"]).await;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("errorstat_{code}:count=")))
        .and_then(|count| count.split(',').next()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs one failing `GET` through cluster `name`: how many `CLUSTERDOWN` replies the node sent
/// for it, and how long it took.
async fn attempts(
    runtime: &Runtime,
    name: &str,
    con: &mut MultiplexedConnection,
) -> (u64, Duration) {
    let before = error_count(con, "CLUSTERDOWN").await;
    let started = Instant::now();
    let result = get::<Option<String>>(&handle(runtime, name), "flaky:{k}").await;
    let took = started.elapsed();
    let (code, message) = code_of(result);
    assert_eq!(code, "CLUSTERDOWN", "{name}: {message}");
    (error_count(con, "CLUSTERDOWN").await - before, took)
}

#[tokio::test]
async fn retries_and_redirect_budget_ride_out_clusterdown() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let addrs = cluster.addrs();
        let runtime = start(vec![
            cluster_config("impatient", &addrs, json!({ "max_retries": -1, "max_redirects": -1 })),
            cluster_config(
                "measured",
                &addrs,
                json!({ "max_retries": 3, "min_retry_backoff": "100ms", "max_retry_backoff": "100ms", "max_redirects": -1 }),
            ),
            cluster_config(
                "redirects",
                &addrs,
                json!({ "max_retries": -1, "max_redirects": 2, "min_retry_backoff": "10ms", "max_retry_backoff": "20ms" }),
            ),
            cluster_config(
                "patient",
                &addrs,
                json!({ "max_retries": 100, "min_retry_backoff": "20ms", "max_retry_backoff": "20ms", "max_redirects": -1 }),
            ),
        ])
        .await;
        let key = "flaky:{k}";
        for name in ["impatient", "measured", "redirects", "patient"] {
            let (): () = handle(&runtime, name).set(key, name).await.unwrap();
        }
        // The master stops serving the key's slot: it answers CLUSTERDOWN, a transient error.
        let owner = cluster.node_for_key(key);
        let slot = RedisCluster::slot_for_key(key).to_string();
        let mut con = cluster.node(owner).async_conn().await;
        let (): () = query(&mut con, &["CLUSTER", "DELSLOTS", &slot]).await;

        // Each client sends exactly as many attempts as its config allows, with its backoff.
        let (sent, _) = attempts(&runtime, "impatient", &mut con).await;
        assert_eq!(sent, 1, "max_retries -1 and max_redirects -1: one attempt");
        let (sent, took) = attempts(&runtime, "measured", &mut con).await;
        assert_eq!(sent, 4, "max_retries 3: four attempts");
        assert!(took >= Duration::from_millis(290), "three 100ms backoffs, took {took:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        let (sent, _) = attempts(&runtime, "redirects", &mut con).await;
        assert_eq!(sent, 3, "max_redirects 2 is redis-rs' budget: three attempts");

        // A patient client is still retrying when the slot comes back, and succeeds.
        let before = error_count(&mut con, "CLUSTERDOWN").await;
        let patient = handle(&runtime, "patient");
        let pending = tokio::spawn(async move { get::<Option<String>>(&patient, key).await });
        wait_for_async("the patient client to fail twice", Duration::from_secs(10), || {
            let mut con = con.clone();
            async move {
                let seen = error_count(&mut con, "CLUSTERDOWN").await - before;
                if seen >= 2 { Ok(()) } else { Err(format!("{seen} failures so far")) }
            }
        })
        .await;
        let (): () = query(&mut con, &["CLUSTER", "ADDSLOTS", &slot]).await;
        let value = pending.await.unwrap().expect("the retries outlasted the outage");
        assert_eq!(value.as_deref(), Some("patient"));
        runtime.shutdown().await;
    })
    .await;
}

/// A master with a replica is killed while 16 tasks keep writing, half of them to its slots.
/// With retries spanning the failover, writes to the other masters never fail; writes to its
/// slots resume after the promotion without restarting anything, and the gap is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_resumes_the_dead_masters_slots() {
    bounded(async {
        let cluster = RedisCluster::start(3, 1);
        let runtime = start(vec![cluster_config(
            "ha",
            &cluster.addrs(),
            // While a master is down and its replica not yet promoted, every node answers
            // CLUSTERDOWN (full slot coverage is required by default): retries span that gap.
            json!({ "max_retries": 12, "min_retry_backoff": "50ms", "max_retry_backoff": "500ms" }),
        )])
        .await;
        let ha = handle(&runtime, "ha");
        let doomed = cluster.masters()[0];
        let spared = cluster.masters()[1];
        let doomed_key = key_on(&cluster, doomed, "load-doomed");
        let spared_key = key_on(&cluster, spared, "load-spared");

        let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..16 {
            let ha = ha.clone();
            let key = if task % 2 == 0 {
                doomed_key.clone()
            } else {
                spared_key.clone()
            };
            let (killed_at, stop) = (killed_at.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                // (successes, failures, first success after the kill)
                let (mut ok, mut failed, mut resumed) = (0u64, 0u64, None);
                let mut last_error = String::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match ha.clone().incr::<_, _, i64>(&key, 1).await {
                        Ok(_) => {
                            ok += 1;
                            if let (None, Some(kill)) = (resumed, killed_at.get()) {
                                resumed = Some(kill.elapsed());
                            }
                        }
                        Err(error) => {
                            failed += 1;
                            last_error = error.to_string();
                        }
                    }
                }
                (key, ok, failed, resumed, last_error)
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.kill_node(doomed);
        let _ = killed_at.set(Instant::now());
        // Run until every task on the dead master's slots has written again, plus a moment.
        wait_for_async(
            "writes to the dead master's slots resume",
            Duration::from_secs(30),
            || {
                let ha = ha.clone();
                let key = doomed_key.clone();
                async move { ha.clone().incr::<_, _, i64>(&key, 0).await.map(|_| ()) }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);

        let mut doomed_gap = Duration::ZERO;
        let mut doomed_failures = 0;
        for task in tasks {
            let (key, ok, failed, resumed, last_error) = task.await.unwrap();
            let resumed =
                resumed.unwrap_or_else(|| panic!("a task on {key} never wrote after the kill"));
            if key == doomed_key {
                doomed_gap = doomed_gap.max(resumed);
                doomed_failures += failed;
            } else {
                assert_eq!(
                    failed, 0,
                    "writes to a surviving master failed during the failover: {last_error}"
                );
            }
            assert!(ok > 0);
        }
        println!(
            "failover under load: the dead master's slots took writes again {doomed_gap:?} after \
             the kill ({doomed_failures} calls to them failed beyond their retries); the surviving \
             master's writers saw no failure"
        );
        runtime.shutdown().await;
    })
    .await;
}
