//! A server that is down for long, under open-loop load.

use super::*;

/// The server is gone for 10 s while requests keep arriving at a steady 400 per second,
/// whether or not earlier ones finished (as a gateway's traffic does). Each call fails fast
/// with an error naming the pool, so calls in flight stay few instead of piling up; once the
/// server is back the pool reconnects by itself within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outage_fails_fast_without_queueing_and_recovers_by_itself() {
    const OUTAGE: Duration = Duration::from_secs(10);
    let server = RedisServer::start();
    // Default retry policy: 3 retries, backoff from 8 ms to 512 ms.
    let (runtime, redis) = start(&server, json!({})).await;
    let () = redis.clone().set("outage", 1).await.unwrap();

    let back = blocking(|| server.restart_after(OUTAGE));
    let down_at = Instant::now();
    let open = OpenLoop::run(&redis, "outage", server.port(), || back.is_finished()).await;
    let returned_at = Instant::now();
    let downtime = returned_at - down_at;
    back.wait().await;
    let recovered: Option<i64> = wait_for_async(
        "the pool to reconnect by itself",
        Duration::from_secs(5),
        || read(&redis, "outage"),
    )
    .await;
    let recovery = returned_at.elapsed();
    open.settle().await;
    runtime.shutdown().await;

    let OpenLoop {
        issued,
        most_in_flight,
        most_waiting,
        most_open,
        ..
    } = open;
    let log = open.log.lock().unwrap();
    println!(
        "long outage: down {downtime:?}; {issued} calls issued at {} per second: {} failed \
         (slowest failure {:?}), {} succeeded; at most {most_in_flight} calls in flight, \
         {most_waiting} tasks waiting for a connection, {most_open} connections open; first \
         success {recovery:?} after the server returned (value {recovered:?}); errors: {:#?}",
        PER_TICK as u128 * 1000 / EVERY.as_millis(),
        log.failed,
        log.slowest_failure,
        log.succeeded,
        log.errors,
    );
    assert!(
        log.failed > 100,
        "calls during the outage must fail: {}",
        log.failed
    );
    assert!(
        log.slowest_failure < Duration::from_secs(2),
        "a call took {:?} to fail: failures are not fast",
        log.slowest_failure
    );
    // 1 s of arrivals: calls that queue for the server instead of failing would reach 4000.
    assert!(
        most_in_flight <= 400,
        "{most_in_flight} calls in flight: calls queue up during the outage"
    );
    assert!(most_open <= 10, "{most_open} connections for pool_size 10");
    for message in log.errors.keys() {
        assert!(
            names_pool(message),
            "the error does not name the pool: {message}"
        );
    }
    assert!(
        log.errors
            .keys()
            .any(|message| message.contains("cannot connect to 127.0.0.1:PORT")),
        "no error says the server cannot be reached: {:?}",
        log.errors
    );
    assert_eq!(
        recovered, None,
        "a server without persistence comes back empty"
    );
    assert!(
        recovery < Duration::from_secs(1),
        "the pool took {recovery:?} to recover after the server returned"
    );
}
