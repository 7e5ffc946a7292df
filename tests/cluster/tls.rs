//! TLS settings on every cluster connection.

use super::*;

/// A one-node cluster that only speaks TLS (client certificates required, TLS 1.3 only).
fn tls_cluster() -> RedisServer {
    let bus = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::builder()
        .tls(ClientAuth::Required)
        .arg("--cluster-enabled", "yes")
        .arg("--cluster-port", bus.to_string())
        // Announce the TLS port in CLUSTER SLOTS (the plain port is 0).
        .arg("--tls-cluster", "yes")
        .arg("--tls-protocols", "TLSv1.3")
        .start();
    let mut con = server.conn();
    let (): () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query(&mut con)
        .unwrap();
    redplug_testkit::wait_for("the one-node cluster", Duration::from_secs(10), || {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if info.contains("cluster_state:ok") {
            Ok(())
        } else {
            Err(info)
        }
    });
    server
}

#[tokio::test]
async fn tls_settings_apply_to_every_cluster_connection() {
    bounded(async {
        let server = tls_cluster();
        let files = server.tls().unwrap().clone();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let client_cert = json!([{ "certificate": path(&files.client_cert), "private_key": path(&files.client_key) }]);
        let addrs = [server.addr()];

        let runtime = start(vec![
            cluster_config(
                "verified",
                &addrs,
                json!({ "tls": { "ca_certs": [path(&files.ca_cert)], "client_certs": client_cert, "disable_system_ca_pool": true, "min_version": "TLS13" } }),
            ),
            cluster_config(
                "insecure",
                &addrs,
                json!({ "tls": { "allow_insecure_connections": true, "disable_system_ca_pool": true, "client_certs": client_cert } }),
            ),
        ])
        .await;
        for name in ["verified", "insecure"] {
            let handle = handle(&runtime, name);
            let (): () = handle.clone().set(name, 1).await.unwrap();
            let node = runtime.selectors().cluster_node_for_key(name, name).await.unwrap().unwrap();
            let value: Option<i64> = get(&node, name).await.unwrap();
            assert_eq!(value, Some(1), "{name}: the node handle speaks TLS too");
            let mut exclusive = handle.checkout().await.unwrap();
            let value: Option<i64> = redis::cmd("GET").arg(name).query_async(&mut exclusive).await.unwrap();
            assert_eq!(value, Some(1), "{name}: exclusive connections speak TLS too");
        }
        runtime.shutdown().await;

        let refused = |name: &'static str, tls: Value| {
            let addrs = addrs.clone();
            async move {
                let config = cluster_config(name, &addrs, json!({ "tls": tls, "dial_timeout": "2s" }));
                refused_start(vec![config], name).await
            }
        };
        // Only an unrelated CA is trusted (the system's CAs are off): the server is refused.
        let error = refused(
            "untrusted",
            json!({ "ca_certs": [path(&files.other_ca_cert)], "client_certs": client_cert, "disable_system_ca_pool": true }),
        )
        .await;
        assert!(error.contains("cluster `untrusted`") && error.contains(&server.addr()), "{error}");
        assert!(error.to_lowercase().contains("certificate"), "{error}");
        // max_version TLS 1.2 against a TLS 1.3-only server.
        let error = refused(
            "old",
            json!({ "ca_certs": [path(&files.ca_cert)], "client_certs": client_cert, "max_version": "TLS12" }),
        )
        .await;
        assert!(error.contains("cluster `old`") && error.to_lowercase().contains("version"), "{error}");
        // The server wants a client certificate.
        let error = refused("anonymous", json!({ "ca_certs": [path(&files.ca_cert)] })).await;
        assert!(error.contains("cluster `anonymous`") && error.contains(&server.addr()), "{error}");
        println!("TLS refusals, last one: {error}");
    })
    .await;
}
