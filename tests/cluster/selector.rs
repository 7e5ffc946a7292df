//! KrakenD's cluster selector: a pool handle to the master that owns a key's slot.

use super::*;

#[tokio::test]
async fn cluster_node_for_key_returns_the_master_serving_the_slot() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let runtime = start(vec![cluster_config("shards", &cluster.addrs(), json!({}))]).await;
        let selectors = runtime.selectors();
        let mut admin = cluster.node(0).async_conn().await;

        let mut by_port: Vec<(u16, RedisPool)> = Vec::new();
        for master in cluster.masters() {
            for n in 0..3 {
                let key = key_on(&cluster, master, &format!("node{master}-{n}"));
                let expected = owner_port(&mut admin, &key).await;
                let node = selectors
                    .cluster_node_for_key("shards", &key)
                    .await
                    .unwrap()
                    .expect("every slot is served");
                assert_eq!(served_by(&node).await, expected, "`{key}`");
                assert!(node.name().starts_with("shards@"), "{}", node.name());
                // Written through the node handle, read straight from that node.
                let (): () = node.clone().set(&key, n).await.unwrap();
                let owner = cluster
                    .nodes()
                    .iter()
                    .find(|server| server.port() == expected)
                    .unwrap();
                let stored: Option<i64> = owner.async_conn().await.get(&key).await.unwrap();
                assert_eq!(stored, Some(n));
                by_port.push((expected, node));
            }
        }
        let ports: BTreeSet<u16> = by_port.iter().map(|(port, _)| *port).collect();
        assert_eq!(ports.len(), 3, "keys on every master");
        // One handle per master, built once.
        for (port, node) in &by_port {
            for (other_port, other) in &by_port {
                assert_eq!(node.same_pool(other), port == other_port);
            }
        }
        assert!(
            selectors
                .cluster_node_for_key("nope", "k")
                .await
                .unwrap()
                .is_none(),
            "an unknown cluster gives None, like KrakenD's selector"
        );

        // The slot changes hands: the old handle gets MOVED, and the next lookup names the new
        // owner with a fresh handle.
        let key = "resharded:{r}";
        let old = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap()
            .unwrap();
        let from = cluster.node_for_key(key);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        move_slot(&cluster, key, to).await;
        let (code, message) = code_of(old.clone().set::<_, _, ()>(key, 1).await);
        assert_eq!(code, "MOVED", "{message}");
        let new = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served_by(&new).await, cluster.node(to).port());
        let (): () = new.clone().set(key, 2).await.unwrap();
        runtime.shutdown().await;
        let error = selectors
            .cluster_node_for_key("shards", key)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
    })
    .await;
}
