//! A server at its `maxclients` limit.

use super::*;

/// Fills the server with connections of its own until it refuses one; returns them.
async fn fill_server(server: &RedisServer) -> Vec<TcpStream> {
    let mut hogs = Vec::new();
    for _ in 0..64 {
        let mut hog = TcpStream::connect(server.addr()).await.unwrap();
        hog.write_all(b"PING\r\n").await.unwrap();
        let mut reply = vec![0u8; 128];
        let read = tokio::time::timeout(Duration::from_secs(5), hog.read(&mut reply))
            .await
            .expect("the server answers a new connection")
            .unwrap_or(0);
        let reply = String::from_utf8_lossy(&reply[..read]);
        if reply.starts_with("+PONG") {
            hogs.push(hog);
        } else if reply.contains("max number of clients") {
            return hogs;
        } else {
            panic!("unexpected reply while filling the server: {reply:?}");
        }
    }
    panic!("the server accepted 64 connections despite --maxclients");
}

/// With the server at `maxclients`, a pool that needs a connection fails with an error naming
/// the pool and the limit; once clients leave it connects again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_reached_names_the_pool_and_recovers_when_clients_leave() {
    let server = RedisServer::builder().arg("--maxclients", "4").start();
    // Startup is lazy (no min_idle_conns): nothing connects until the first command.
    let (runtime, redis) = start(&server, json!({})).await;
    let hogs = fill_server(&server).await;
    let started = Instant::now();
    let error = read(&redis, "k")
        .await
        .expect_err("the server has no room for the pool");
    let failed_after = started.elapsed();
    let message = error.to_string();
    let hog_count = hogs.len();

    drop(hogs);
    let freed = Instant::now();
    let value = wait_for_async(
        "the pool to connect once clients left",
        Duration::from_secs(5),
        || read(&redis, "k"),
    )
    .await;
    let recovery = freed.elapsed();
    runtime.shutdown().await;

    println!(
        "maxclients 4 held by {hog_count} other connections: the call failed after \
         {failed_after:?}: {message}; connected {recovery:?} after they left (got {value:?})"
    );
    assert!(names_pool(&message), "{message}");
    assert!(message.contains("max number of clients"), "{message}");
    assert!(
        message.contains("maxclients"),
        "says which limit: {message}"
    );
    assert!(failed_after < Duration::from_secs(3), "{failed_after:?}");
    assert!(recovery < Duration::from_secs(2), "{recovery:?}");
}
