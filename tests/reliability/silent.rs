//! A server that stops answering (frozen, a silent listener), one that turns connections away, and exclusive connections' deadlines.

use super::*;

/// What one call of a load test saw.
struct Call {
    took: Duration,
    error: Option<String>,
}

/// [`TASKS`] tasks reading one key in a loop until `stop`, each call timed.
fn closed_loop(
    redis: &RedisPool,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Call>>> {
    (0..TASKS)
        .map(|_| {
            let (redis, stop) = (redis.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = read(&redis, "frozen").await;
                    calls.push(Call {
                        took: started.elapsed(),
                        error: result.err().map(|error| error.to_string()),
                    });
                }
                calls
            })
        })
        .collect()
}

/// Stops the load and gathers every call, failing the test if a task hangs.
async fn gather(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<Vec<Call>>>) -> Vec<Call> {
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for task in tasks {
        let log = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("a task's last call never ended")
            .expect("no task panicked");
        calls.extend(log);
    }
    calls
}

/// The slowest call, and the distinct errors with how often each came.
fn summary(calls: &[Call], port: u16) -> (Duration, BTreeMap<String, usize>) {
    let slowest = calls.iter().map(|call| call.took).max().unwrap_or_default();
    let mut errors = BTreeMap::new();
    for error in calls.iter().filter_map(|call| call.error.as_ref()) {
        let masked = error.replace(&port.to_string(), "PORT");
        *errors.entry(masked).or_insert(0) += 1;
    }
    (slowest, errors)
}

/// The server freezes (`SIGSTOP`: its kernel still accepts connections, nothing answers) for
/// 10 s under 32 tasks, with `dial_timeout` 1s. Commands on the shared lane fail at its 3 s
/// reply deadline; after that every call waits for at most one dial (1 s), shared with every
/// task waiting for the same dial, so no call takes much more than 4 s (the bound is
/// about 6 s). Once the server runs again, the pool answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_ends_every_call_within_its_bound_and_recovers_at_once() {
    const FROZEN: Duration = Duration::from_secs(10);
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "dial_timeout": "1s" })).await;
    let () = redis.clone().set("frozen", 1).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = closed_loop(&redis, &stop);
    // The load runs a moment before the freeze: this paces the scenario.
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.freeze();
    tokio::time::sleep(FROZEN).await;
    server.thaw();
    let thawed = Instant::now();
    let value: Option<i64> = wait_for_async(
        "the pool to answer after the server runs again",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = thawed.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = gather(&stop, tasks).await;
    runtime.shutdown().await;

    let (slowest, errors) = summary(&calls, server.port());
    let failed: usize = errors.values().sum();
    println!(
        "frozen for {FROZEN:?} under {TASKS} tasks (dial_timeout 1s): {} calls, {failed} \
         failed, slowest {slowest:?}; answered {recovery:?} after the server ran again; \
         errors: {errors:#?}",
        calls.len()
    );
    assert_eq!(value, Some(1));
    assert!(
        failed >= TASKS,
        "calls must fail while the server is frozen"
    );
    assert!(
        slowest < Duration::from_secs(6),
        "a call took {slowest:?} while the server was frozen"
    );
    assert!(
        recovery < Duration::from_millis(500),
        "the pool took {recovery:?} to answer once the server ran again"
    );
    for message in errors.keys() {
        assert!(
            names_pool(message),
            "the error does not name the pool: {message}"
        );
    }
    assert!(
        errors.keys().any(|m| m.contains("dial_timeout")),
        "no call was told that connecting timed out: {errors:?}"
    );
}

/// The same freeze with requests arriving at 400 a second whether or not earlier ones
/// finished: calls in flight stay bounded by what arrives within one bound (the 3 s reply
/// deadline), instead of piling up for the whole freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_under_open_loop_load_keeps_calls_in_flight_bounded() {
    const FROZEN: Duration = Duration::from_secs(10);
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "dial_timeout": "1s" })).await;
    let () = redis.clone().set("frozen", 1).await.unwrap();

    server.freeze();
    let frozen_at = Instant::now();
    let open = OpenLoop::run(&redis, "frozen", server.port(), || {
        frozen_at.elapsed() >= FROZEN
    })
    .await;
    server.thaw();
    let thawed = Instant::now();
    let value: Option<i64> = wait_for_async(
        "the pool to answer after the server runs again",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = thawed.elapsed();
    open.settle().await;
    runtime.shutdown().await;

    let slowest = open.log.lock().unwrap().slowest;
    let most_in_flight = open.most_in_flight;
    let per_second = PER_TICK as u128 * 1000 / EVERY.as_millis();
    println!(
        "frozen for {FROZEN:?} at {per_second} calls a second (dial_timeout 1s): at most \
         {most_in_flight} calls in flight, slowest {slowest:?}; answered {recovery:?} after the \
         server ran again"
    );
    assert_eq!(value, Some(1));
    // 3.5 s of arrivals: the 3 s reply deadline, plus scheduling slack.
    assert!(
        most_in_flight <= 1_400,
        "{most_in_flight} calls in flight: calls pile up while the server is frozen"
    );
    assert!(slowest < Duration::from_secs(6), "a call took {slowest:?}");
    assert!(recovery < Duration::from_millis(500), "{recovery:?}");
}

/// A listener that accepts connections and never says a word (a wedged proxy, a port taken by
/// something else): every call ends within `dial_timeout`, and waiting tasks share each dial
/// instead of queueing one dial each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_fails_calls_within_dial_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        })
    };
    let config = json!({ "extra_config": { "redis": { "connection_pools": [{
        "name": POOL, "address": format!("127.0.0.1:{port}"), "client_name": CLIENT_NAME,
        "dial_timeout": "1s"
    }] } } });
    let runtime = Runtime::builder()
        .only_plugins(["reliability_load"])
        .start_json(&config.to_string())
        .await
        .unwrap();
    let redis = runtime.get::<Load>().unwrap().redis.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks = closed_loop(&redis, &stop);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = gather(&stop, tasks).await;
    let ran = started.elapsed();
    runtime.shutdown().await;
    acceptor.abort();

    let (slowest, errors) = summary(&calls, port);
    let dials = accepted.load(Ordering::SeqCst);
    println!(
        "a silent listener for {ran:?} under {TASKS} tasks: {} calls, slowest {slowest:?}, \
         {dials} connections accepted; errors: {errors:#?}",
        calls.len()
    );
    assert!(calls.iter().all(|call| call.error.is_some()));
    assert!(
        slowest < Duration::from_millis(2_500),
        "a call took {slowest:?} with dial_timeout 1s"
    );
    // One shared dial at a time: about one a second, not one per task.
    assert!(dials <= 10, "{dials} connections in {ran:?}");
    for message in errors.keys() {
        assert!(
            names_pool(message) && message.contains("dial_timeout"),
            "{message}"
        );
    }
}

/// A pool with the wrong password under 32 tasks: the server turns every connection away, and
/// the pool spaces its dials out instead of storming the server with thousands a second; once
/// the server accepts the password, the pool connects within `max_retry_backoff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_do_not_storm_the_server() {
    const LOAD: Duration = Duration::from_secs(3);
    let server = RedisServer::builder().password("right").start();
    let (runtime, redis) = start(&server, json!({ "password": "wrong" })).await;
    let received = |info: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO stats lists total_connections_received")
    };
    let mut admin = server.async_conn().await;
    let before: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = closed_loop(&redis, &stop);
    tokio::time::sleep(LOAD).await;
    let after: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let dials = received(&after) - received(&before);

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("wrong")
        .query_async(&mut admin)
        .await
        .unwrap();
    let fixed = Instant::now();
    let recovered = wait_for_async(
        "the pool to connect once the password is right",
        Duration::from_secs(5),
        || read(&redis, "frozen"),
    )
    .await;
    let recovery = fixed.elapsed();
    let calls = gather(&stop, tasks).await;
    runtime.shutdown().await;

    let (_, errors) = summary(&calls, server.port());
    println!(
        "wrong password under {TASKS} tasks for {LOAD:?}: {} calls, {dials} connections \
         received by the server; connected {recovery:?} after the password was fixed (got \
         {recovered:?}); errors: {errors:#?}",
        calls.len()
    );
    // The backoff tops out at max_retry_backoff (512 ms): a few dials a second.
    assert!(
        dials <= 40,
        "{dials} connection attempts in {LOAD:?}: the pool storms the server"
    );
    assert!(recovery < Duration::from_millis(1_500), "{recovery:?}");
    assert!(!errors.is_empty());
    assert!(
        errors
            .keys()
            .all(|m| names_pool(m) && m.contains("rejected the credentials")),
        "{errors:?}"
    );
}

/// Exclusive connections keep deadlines too: an ordinary command gets 3 s, a blocking one its
/// own timeout plus 3 s, and `BLPOP key 0` waits as long as it must (here: through a freeze);
/// a checkout while the server is frozen ends within its bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_connections_have_reply_deadlines_unless_told_to_wait_forever() {
    let server = RedisServer::start();
    let (runtime, redis) = start(
        &server,
        json!({ "dial_timeout": "1s", "pool_timeout": "1s", "pool_size": 6 }),
    )
    .await;
    let mut plain = redis.checkout().await.unwrap();
    let mut blocking_once = redis.checkout().await.unwrap();
    let mut forever = redis.checkout().await.unwrap();
    let idle = redis.checkout().await.unwrap();
    drop(idle);

    server.freeze();
    let frozen = Instant::now();
    let plain_call = async {
        let started = Instant::now();
        let result: RedisResult<Option<i64>> = plain.get("k").await;
        (started.elapsed(), result)
    };
    let blocking_call = async {
        let started = Instant::now();
        // A key of its own: after the thaw the server may still run this BLPOP, given up on,
        // and hand it an item pushed to its key.
        let result: RedisResult<Option<(String, String)>> =
            blocking_once.blpop("given-up", 1.0).await;
        (started.elapsed(), result)
    };
    let checkout = async {
        let started = Instant::now();
        let result = redis.checkout().await.map(drop);
        (started.elapsed(), result)
    };
    let waiting = tokio::spawn(async move {
        let result: RedisResult<Option<(String, String)>> = forever.blpop("list", 0.0).await;
        (Instant::now(), result)
    });
    let ((plain_took, plain), (blocking_took, blocked), (checkout_took, checked_out)) =
        tokio::join!(plain_call, blocking_call, checkout);
    let still_waiting = !waiting.is_finished();
    let waited = frozen.elapsed();
    server.thaw();
    let () = server
        .async_conn()
        .await
        .rpush("list", "item")
        .await
        .unwrap();
    let (answered, forever_result) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("BLPOP 0 answered once the server ran again")
        .unwrap();
    runtime.shutdown().await;

    let plain = plain.expect_err("a frozen server cannot answer");
    let blocked = blocked.expect_err("a frozen server cannot answer");
    println!(
        "frozen server: GET on an exclusive connection failed after {plain_took:?} ({plain}); \
         BLPOP 1 after {blocking_took:?} ({blocked}); a checkout ended after {checkout_took:?} \
         ({checked_out:?}); BLPOP 0 still waited after {waited:?} and got {forever_result:?} \
         {:?} after the thaw",
        answered.saturating_duration_since(frozen + waited)
    );
    assert!(
        plain.is_timeout() && names_pool(&plain.to_string()),
        "{plain}"
    );
    assert!(
        (Duration::from_millis(2_900)..Duration::from_millis(4_500)).contains(&plain_took),
        "{plain_took:?}"
    );
    assert!(blocked.is_timeout(), "{blocked}");
    assert!(
        (Duration::from_millis(3_900)..Duration::from_millis(5_500)).contains(&blocking_took),
        "BLPOP with a 1 s timeout gave up after {blocking_took:?}, not 1 s + 3 s"
    );
    assert!(
        checkout_took < Duration::from_millis(3_500),
        "a checkout took {checkout_took:?}"
    );
    assert!(
        checked_out.is_err(),
        "no connection can be verified while frozen"
    );
    assert!(still_waiting, "BLPOP 0 gave up while the server was frozen");
    assert_eq!(forever_result, Ok(Some(("list".into(), "item".into()))));
}
