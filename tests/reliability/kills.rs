//! Connections the server kills, under load.

use super::*;

/// `CLIENT KILL TYPE normal` six times while 32 tasks run: with the default retry policy no
/// call fails, and afterwards the pool is back to its `min_idle_conns` idle connections (plus
/// the ones carrying the shared command lanes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_under_load_fails_no_call_and_restores_min_idle_conns() {
    const MIN_IDLE: usize = 3;
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "min_idle_conns": MIN_IDLE })).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (redis, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match redis
                        .clone()
                        .incr::<_, _, i64>(format!("kill:{task}"), 1)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(error) => failed.push(error.to_string()),
                    }
                    slowest = slowest.max(started.elapsed());
                }
                (ok, failed, slowest)
            })
        })
        .collect();

    let mut admin = server.async_conn().await;
    let mut killed = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let count: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .unwrap();
        killed.push(count);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
    for task in tasks {
        let (task_ok, task_failed, task_slowest) = task.await.unwrap();
        ok += task_ok;
        failed.extend(task_failed);
        slowest = slowest.max(task_slowest);
    }
    let settled_from = Instant::now();
    let settled = wait_for_async(
        "min_idle_conns idle connections plus the lanes, all alive",
        Duration::from_secs(10),
        || async {
            let status = redis.status();
            let (_, on_server) = server_clients(&server).await;
            // The busy pool spread over up to 4 lanes, which stay open until idle; each lane
            // holds one connection out of the idle set.
            let lanes = status.in_use;
            if status.idle == MIN_IDLE
                && (1..=4).contains(&lanes)
                && status.size == MIN_IDLE + lanes
                && on_server == status.size
            {
                Ok((status, on_server))
            } else {
                Err(format!("{status:?}, {on_server} on the server"))
            }
        },
    )
    .await;
    let settle_time = settled_from.elapsed();
    // The lane still works after all that.
    let _: i64 = redis.clone().incr("kill:0", 1).await.unwrap();
    runtime.shutdown().await;

    println!(
        "CLIENT KILL x{} (connections killed each time: {killed:?}) under {TASKS} tasks: {ok} \
         calls succeeded, {} failed, slowest {slowest:?}; settled in {settle_time:?} at \
         {:?} with {} connections on the server",
        killed.len(),
        failed.len(),
        settled.0,
        settled.1,
    );
    assert!(
        failed.is_empty(),
        "calls failed beyond the retry budget: {failed:?}"
    );
    assert!(
        killed.iter().all(|count| *count >= 1),
        "every kill hit the pool: {killed:?}"
    );
}
