//! Restarts under load, and `query_once`, which is never retried.

use super::*;

/// Before the kill, while the server is being killed, and once it is gone: a command that
/// starts in one of the first two phases and ends in the second or third may have been applied
/// without its reply reaching us.
const RUNNING: u8 = 0;
const KILLING: u8 = 1;
const KILLED: u8 = 2;

#[derive(Default)]
struct IncrLog {
    /// The counter value each acknowledged INCR returned.
    acked: Vec<i64>,
    failed: Vec<String>,
    /// Calls in flight while the server died.
    in_doubt: usize,
    slowest: Duration,
}

/// What one restart-under-load run saw.
struct RestartRun {
    /// The counter value each acknowledged INCR returned, sorted.
    acked: Vec<i64>,
    failed: Vec<String>,
    /// Calls in flight while the server died.
    in_doubt: usize,
    slowest: Duration,
    downtime: Duration,
    before_kill: i64,
    final_count: i64,
}

/// [`TASKS`] tasks INCR `key` for 5 s; at 2 s `server` is killed and started again on the same
/// port about 150 ms later.
async fn incr_through_a_restart(
    server: &RedisServer,
    redis: &RedisPool,
    key: &'static str,
) -> RestartRun {
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (redis, stop, phase) = (redis.clone(), stop.clone(), phase.clone());
            tokio::spawn(async move {
                let mut log = IncrLog::default();
                while !stop.load(Ordering::Relaxed) {
                    let began_in = phase.load(Ordering::SeqCst);
                    let started = Instant::now();
                    match redis.clone().incr::<_, _, i64>(key, 1).await {
                        Ok(value) => log.acked.push(value),
                        Err(error) => log.failed.push(error.to_string()),
                    }
                    log.slowest = log.slowest.max(started.elapsed());
                    if began_in != KILLED && phase.load(Ordering::SeqCst) != RUNNING {
                        log.in_doubt += 1;
                    }
                }
                log
            })
        })
        .collect();

    tokio::time::sleep_until((load_started + Duration::from_secs(2)).into()).await;
    let before_kill: i64 = server.async_conn().await.get(key).await.unwrap();
    phase.store(KILLING, Ordering::SeqCst);
    let stopped_at = Instant::now();
    let back = blocking(|| server.restart_after(Duration::from_millis(150)));
    phase.store(KILLED, Ordering::SeqCst);
    back.wait().await;
    let downtime = stopped_at.elapsed();

    tokio::time::sleep_until((load_started + Duration::from_secs(5)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = RestartRun {
        acked: Vec::new(),
        failed: Vec::new(),
        in_doubt: 0,
        slowest: Duration::ZERO,
        downtime,
        before_kill,
        final_count: 0,
    };
    for task in tasks {
        let log = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("every task finishes its last call")
            .expect("no task panicked");
        run.acked.extend(log.acked);
        run.failed.extend(log.failed);
        run.in_doubt += log.in_doubt;
        run.slowest = run.slowest.max(log.slowest);
    }
    run.acked.sort_unstable();
    run.final_count = server.async_conn().await.get(key).await.unwrap();
    run
}

/// The counter values no acknowledged call was given: INCRs the server applied whose reply was
/// lost with the server.
fn lost_replies(acked: &[i64], final_count: i64) -> Vec<i64> {
    let mut given = acked.iter().copied().peekable();
    (1..=final_count)
        .filter(|value| {
            while given.next_if(|v| v < value).is_some() {}
            given.next_if_eq(value).is_none()
        })
        .collect()
}

/// 32 tasks INCR one counter for 5 s; at 2 s the server (AOF, fsync on every write) is killed
/// and started again on the same port. With retries configured to outlast the gap, no call
/// fails and no acknowledged INCR is lost.
///
/// Delivery is at least once: an INCR the server applied just before dying, whose reply died
/// with it, is retried and applied again. Such replies show up as counter values no call was
/// given; the test counts them and bounds them by the calls in flight at the kill.
/// `RedisPool::query_once` is the opt-out for commands that must not be applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_loses_no_acknowledged_increment() {
    let server = RedisServer::builder().persistence(true).start();
    // The server is away for 150 ms plus its start-up (AOF replay included). 20 retries that
    // each wait at least 100 ms span at least 2 s, a wide margin on a loaded machine; the
    // defaults (3 retries from 8 ms) would give up after about 140 ms of waiting at most.
    let (runtime, redis) = start(
        &server,
        json!({ "max_retries": 20, "min_retry_backoff": "100ms", "max_retry_backoff": "1s" }),
    )
    .await;
    let run = incr_through_a_restart(&server, &redis, "restart:counter").await;
    runtime.shutdown().await;
    let RestartRun {
        acked,
        failed,
        in_doubt,
        slowest,
        downtime,
        before_kill,
        final_count,
    } = run;

    let repeated = acked.windows(2).filter(|w| w[0] == w[1]).count();
    let lost_replies = lost_replies(&acked, final_count);
    println!(
        "restart under load: {} calls by {TASKS} tasks, {} acknowledged, {} failed; server \
         down for {downtime:?} (counter {before_kill} when killed); final counter \
         {final_count}; {} replies lost and their INCR applied again {lost_replies:?} (calls \
         in flight at the kill: {in_doubt}); slowest call {slowest:?}",
        acked.len() + failed.len(),
        acked.len(),
        failed.len(),
        lost_replies.len(),
    );
    assert!(
        failed.is_empty(),
        "{} calls failed although retries span the restart, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(
        repeated, 0,
        "two calls got the same counter value: an acknowledged INCR was lost in the restart"
    );
    assert!(
        acked.last().is_none_or(|last| *last <= final_count),
        "a call was acknowledged with {:?}, beyond the final counter {final_count}",
        acked.last()
    );
    assert_eq!(
        final_count as usize,
        acked.len() + lost_replies.len(),
        "the final counter is the acknowledged INCRs plus those whose reply was lost"
    );
    assert!(
        lost_replies.len() <= in_doubt,
        "{} INCRs applied without a reply, but only {in_doubt} calls were in flight at the kill",
        lost_replies.len()
    );
    assert!(
        downtime < Duration::from_secs(3),
        "the restart itself took {downtime:?}"
    );
}

/// `query_once` is the per-call opt-out of retries: during an outage it fails after one
/// attempt, where the same command with retries would wait out its backoffs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_once_is_never_retried() {
    let server = RedisServer::start();
    let (runtime, redis) = start(
        &server,
        json!({ "max_retries": 3, "min_retry_backoff": "300ms", "max_retry_backoff": "300ms" }),
    )
    .await;
    let incr = redis::cmd("INCR").arg("once").clone();
    assert_eq!(redis.query_once::<i64>(&incr).await.unwrap(), 1);

    blocking(|| server.stop());
    let started = Instant::now();
    let once = redis.query_once::<i64>(&incr).await.unwrap_err();
    let once_took = started.elapsed();
    let started = Instant::now();
    let retried = redis
        .clone()
        .incr::<_, _, i64>("once", 1)
        .await
        .unwrap_err();
    let retried_took = started.elapsed();
    println!(
        "server down: query_once failed after {once_took:?} ({once}); with 3 retries of 300 ms \
         the same command failed after {retried_took:?} ({retried})"
    );
    assert!(
        once_took < Duration::from_millis(250),
        "query_once waited {once_took:?}: it was retried"
    );
    assert!(
        retried_took >= Duration::from_millis(900),
        "{retried_took:?}"
    );
    assert!(names_pool(&once.to_string()), "{once}");

    blocking(|| server.restart());
    assert_eq!(
        redis.query_once::<i64>(&incr).await.unwrap(),
        1,
        "a fresh connection after the restart (no persistence: the counter starts over)"
    );
    runtime.shutdown().await;
}

/// A connection the server closed while the pool was idle is noticed before a command is
/// written to it, so even `query_once`, which never retries, does not fail for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_once_after_a_server_side_kill_gets_a_live_connection() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({})).await;
    let ping = redis::cmd("PING").clone();
    for round in 1..=5 {
        let _: String = redis.query_once(&ping).await.unwrap();
        let mut admin = server.async_conn().await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .unwrap();
        wait_for_async(
            "the killed connections to be gone",
            Duration::from_secs(5),
            || async {
                match server_clients(&server).await {
                    (_, 0) => Ok(()),
                    (_, named) => Err(format!("{named} still listed")),
                }
            },
        )
        .await;
        let reply: RedisResult<String> = redis.query_once(&ping).await;
        println!("round {round}: killed {killed} connections; query_once then gave {reply:?}");
        assert_eq!(reply.as_deref().ok(), Some("PONG"), "{reply:?}");
    }
    runtime.shutdown().await;
}
