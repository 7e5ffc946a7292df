//! A server that answers slowly: the shared lane's reply deadline.

use super::*;

/// RESP for one command.
fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    out
}

/// Sends `DEBUG SLEEP secs` on a connection of its own and returns once the server is asleep
/// (a `PING` on another connection goes unanswered for 200 ms), with a task that ends, giving
/// the instant, when the server answers again.
async fn put_to_sleep(server: &RedisServer, secs: u64) -> tokio::task::JoinHandle<Instant> {
    let mut probe = TcpStream::connect(server.addr()).await.unwrap();
    let mut sleeper = TcpStream::connect(server.addr()).await.unwrap();
    sleeper
        .write_all(&resp(&["DEBUG", "SLEEP", &secs.to_string()]))
        .await
        .unwrap();
    let woke = tokio::spawn(async move {
        let mut reply = [0u8; 5];
        sleeper.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"+OK\r\n");
        Instant::now()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pong = [0u8; 7];
    loop {
        assert!(Instant::now() < deadline, "the server never fell asleep");
        probe.write_all(b"PING\r\n").await.unwrap();
        let answered =
            tokio::time::timeout(Duration::from_millis(200), probe.read_exact(&mut pong));
        if answered.await.is_err() {
            return woke;
        }
    }
}

/// `DEBUG SLEEP 5` against the shared lane's 3 s response timeout (`pool::RESPONSE_TIMEOUT`,
/// which has no config key, as in KrakenD): the lane's calls fail after the timeout with an
/// error naming the pool, tasks waiting for an exclusive connection are released after
/// `pool_timeout`, and the pool works again once the server does.
///
/// The test sleeps the server longer than the timeout rather than shortening the timeout for
/// the test: it checks the timeout a gateway really runs with, at the cost of 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_times_out_calls_releases_waiters_and_stays_usable() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({ "pool_size": 2, "pool_timeout": "1s" })).await;
    let () = redis.clone().set("slow", 1).await.unwrap();
    // The lane holds one of the two connections, this checkout the other.
    let held = redis.checkout().await.unwrap();

    let woke = put_to_sleep(&server, 5).await;
    let asleep_at = Instant::now();
    let lane_calls: Vec<_> = (0..8)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = read(&redis, "slow").await;
                (started.elapsed(), result)
            })
        })
        .collect();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let redis = redis.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = redis.checkout().await.map(drop);
                (started.elapsed(), result)
            })
        })
        .collect();
    let mut waited = Vec::new();
    for waiter in waiters {
        let (took, result) = waiter.await.unwrap();
        let error = result.expect_err("no connection is free while the server sleeps");
        waited.push((took, error.to_string()));
    }
    let mut timed_out = Vec::new();
    for call in lane_calls {
        let (took, result) = call.await.unwrap();
        let error = result.expect_err("the lane's calls time out while the server sleeps");
        timed_out.push((took, error.is_timeout(), error.to_string()));
    }
    let woke_at = woke.await.unwrap();
    let value: Option<i64> = wait_for_async(
        "the pool to work after the server woke",
        Duration::from_secs(5),
        || read(&redis, "slow"),
    )
    .await;
    let usable_after = woke_at.elapsed();
    drop(held);
    let mut exclusive = redis.checkout().await.unwrap();
    let _: String = redis::cmd("PING")
        .query_async(&mut exclusive)
        .await
        .unwrap();
    drop(exclusive);
    runtime.shutdown().await;

    println!(
        "DEBUG SLEEP 5 (asleep {:?}): lane calls failed after {:?}: {}; pool_timeout 1s \
         waiters released after {:?}: {}; usable again {usable_after:?} after the server woke \
         (got {value:?})",
        woke_at - asleep_at,
        timed_out.iter().map(|t| t.0).collect::<Vec<_>>(),
        timed_out[0].2,
        waited.iter().map(|w| w.0).collect::<Vec<_>>(),
        waited[0].1,
    );
    for (took, is_timeout, message) in &timed_out {
        assert!(*is_timeout, "not reported as a timeout: {message}");
        assert!(names_pool(message), "{message}");
        assert!(
            (Duration::from_millis(2_900)..Duration::from_millis(4_500)).contains(took),
            "a lane call failed after {took:?}, not the 3 s response timeout"
        );
    }
    for (took, message) in &waited {
        assert!(names_pool(message), "{message}");
        assert!(message.contains("pool_timeout"), "{message}");
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(2_500)).contains(took),
            "a waiter was released after {took:?}, not pool_timeout (1s)"
        );
    }
    assert_eq!(value, Some(1));
    assert!(usable_after < Duration::from_secs(2), "{usable_after:?}");
}

/// The lane's 3 s is a read deadline renewed by every reply, not a limit per command: two
/// `DEBUG SLEEP 2` on the lane, the second queued behind the first, answer after 2 and 4 s,
/// and a `GET` queued behind both waits 4 s, all without a timeout, since the server never
/// went 3 s without answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_renew_the_lane_deadline_for_commands_queued_behind_them() {
    let server = RedisServer::start();
    let (runtime, redis) = start(&server, json!({})).await;
    let () = redis.clone().set("queued", 7).await.unwrap();
    let started = Instant::now();
    let sleep = |redis: RedisPool| async move {
        let result: RedisResult<String> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut redis.clone())
            .await;
        (started.elapsed(), result)
    };
    let first = tokio::spawn(sleep(redis.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(sleep(redis.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = read(&redis, "queued").await;
    let queued_after = started.elapsed();
    let (first_after, first) = first.await.unwrap();
    let (second_after, second) = second.await.unwrap();
    runtime.shutdown().await;

    println!(
        "DEBUG SLEEP 2 twice on the lane: answered after {first_after:?} and {second_after:?}, \
         the GET behind them after {queued_after:?}"
    );
    assert_eq!(first.as_deref(), Ok("OK"));
    assert_eq!(second.as_deref(), Ok("OK"), "the second sleep timed out");
    assert_eq!(queued, Ok(Some(7)), "the queued GET timed out");
    assert!(
        second_after > Duration::from_millis(3_500),
        "the sleeps did not queue on one connection: {second_after:?}"
    );
}
