//! Shutting down under load.

use super::*;

/// [`TASKS`] tasks INCR until a call fails, each returning its successes, the error and when
/// it came; two more hold exclusive connections and PING on them until they fail.
#[allow(clippy::type_complexity)]
fn load_until_it_fails(
    redis: &RedisPool,
) -> (
    Vec<tokio::task::JoinHandle<(usize, String, Instant)>>,
    Vec<tokio::task::JoinHandle<RedisResult<u64>>>,
) {
    let tasks = (0..TASKS)
        .map(|task| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    match redis
                        .clone()
                        .incr::<_, _, i64>(format!("shut:{task}"), 1)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(error) => return (ok, error.to_string(), Instant::now()),
                    }
                }
            })
        })
        .collect();
    // Some held exclusive connections, in use at the time of shutdown.
    let exclusives = (0..2)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let mut conn = redis.checkout().await?;
                let mut pings = 0;
                loop {
                    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                    pings += 1;
                    if pings > 1_000_000 {
                        return RedisResult::Ok(pings);
                    }
                }
            })
        })
        .collect();
    (tasks, exclusives)
}

/// `Runtime::shutdown` while 32 tasks INCR: every task ends promptly (its in-flight command
/// answered or failed with a clear error), the server sees no connection left, and later calls
/// say the runtime is shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_load_closes_every_connection_cleanly() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "min_idle_conns": 2 })).await;
    let (tasks, exclusives) = load_until_it_fails(&redis);
    let (before, _) = wait_for_async("load on the pool", Duration::from_secs(5), || async {
        match server_clients(&server).await {
            (open, _) if open >= 3 => Ok((open, ())),
            (open, _) => Err(format!("{open} connections")),
        }
    })
    .await;
    // Let the load run a while: this paces the scenario, it does not wait for a condition.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let shut_at = Instant::now();
    runtime.shutdown().await;
    let shutdown_took = shut_at.elapsed();
    let mut ok = 0;
    let mut errors = BTreeMap::<String, usize>::new();
    let mut last_end = Duration::ZERO;
    for task in tasks {
        let (task_ok, error, ended) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a task hung after shutdown")
            .unwrap();
        ok += task_ok;
        *errors.entry(error).or_default() += 1;
        last_end = last_end.max(ended.saturating_duration_since(shut_at));
    }
    let mut exclusive_errors = Vec::new();
    for task in exclusives {
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("an exclusive connection hung after shutdown")
            .unwrap();
        exclusive_errors.push(format!("{result:?}"));
    }
    let closed_from = Instant::now();
    wait_for_async(
        "no connection left on the server",
        Duration::from_secs(5),
        || async {
            match server_clients(&server).await {
                (0, _) => Ok(()),
                (open, _) => Err(format!("{open} still open")),
            }
        },
    )
    .await;
    let closed_after = closed_from.elapsed();
    let later = read(&redis, "shut:0").await.unwrap_err();
    let later_once = redis
        .query_once::<i64>(redis::cmd("INCR").arg("shut:0"))
        .await
        .unwrap_err();
    let later_get = redis
        .checkout()
        .await
        .expect_err("no checkout after shutdown");

    println!(
        "shutdown under {TASKS} tasks ({before} connections open): shutdown took \
         {shutdown_took:?}; {ok} calls succeeded; every task ended within {last_end:?} with \
         {errors:?}; exclusive users ended with {exclusive_errors:?}; the server saw the last \
         connection close {closed_after:?} after they ended; a later call: {later}"
    );
    for message in errors
        .keys()
        .chain([&later.to_string(), &later_get.to_string()])
    {
        assert!(
            names_pool(message) && message.contains("shut down"),
            "not a clean shutdown error: {message}"
        );
    }
    assert!(later_once.to_string().contains("shut down"), "{later_once}");
    assert!(last_end < Duration::from_secs(4), "{last_end:?}");
}
