//! Routing by hash slot, `MOVED` and `ASK` with and without `max_redirects`, and multi-key
//! commands across slots.

use std::collections::BTreeMap;

use super::*;

/// Two clusters over one real cluster: `follow` follows redirects, `strict` follows none
/// (`max_redirects: -1`). One seed is enough: the other masters are discovered.
async fn follow_and_strict(cluster: &RedisCluster) -> (Runtime, ClusterHandle, ClusterHandle) {
    let seed = vec![cluster.addrs()[0].clone()];
    let runtime = start(vec![
        cluster_config("follow", &seed, json!({})),
        cluster_config("strict", &seed, json!({ "max_redirects": -1 })),
    ])
    .await;
    let follow = handle(&runtime, "follow");
    let strict = handle(&runtime, "strict");
    (runtime, follow, strict)
}

#[tokio::test]
async fn commands_route_by_slot() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let (runtime, follow, strict) = follow_and_strict(&cluster).await;

        // Every key lands on the master that serves its slot, across all three masters.
        let mut masters_used = BTreeSet::new();
        for i in 0..30 {
            let key = format!("route:{i}");
            let (): () = follow.clone().set(&key, i).await.unwrap();
            let owner = cluster.node_for_key(&key);
            let stored: Option<i64> = cluster
                .node(owner)
                .async_conn()
                .await
                .get(&key)
                .await
                .unwrap();
            assert_eq!(stored, Some(i), "`{key}` is on node {owner}");
            masters_used.insert(owner);
        }
        assert_eq!(masters_used.len(), 3, "keys spread over every master");
        let value: Option<i64> = get(&strict, "route:7").await.unwrap();
        assert_eq!(value, Some(7));
        runtime.shutdown().await;
    })
    .await;
}

/// `redplug.db.client.redirects` since the last snapshot, by cluster and kind ("moved" or
/// "ask"). Taking a snapshot resets the debugging recorder's counters.
fn redirects(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "redplug.db.client.redirects" {
            continue;
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        let metrics_util::debugging::DebugValue::Counter(count) = value else {
            panic!("redirects should be a counter, got {value:?}");
        };
        *counts
            .entry((
                label("db.client.connection.pool.name"),
                label("redplug.redirect.kind"),
            ))
            .or_default() += count;
    }
    counts
}

fn count(counts: &BTreeMap<(String, String), u64>, cluster: &str, kind: &str) -> u64 {
    counts
        .get(&(cluster.to_owned(), kind.to_owned()))
        .copied()
        .unwrap_or(0)
}

// Current-thread tests: the node connections' tasks record on the thread that installed the
// local recorder.
#[tokio::test]
async fn moved_is_followed_unless_redirects_are_off() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let (runtime, follow, strict) = follow_and_strict(&cluster).await;
        // Both clients read the topology before the slot moves.
        let (): () = follow.clone().set("warm", 1).await.unwrap();
        let _: Option<i64> = get(&strict, "warm").await.unwrap();

        // MOVED: the slot changes hands after both clients read the topology.
        let moved = "moved:{m}";
        let from = cluster.node_for_key(moved);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        move_slot(&cluster, moved, to).await;
        let to_port = cluster.node(to).port().to_string();
        let (code, message) = code_of(strict.clone().set::<_, _, ()>(moved, "strict").await);
        assert_eq!(
            code, "MOVED",
            "max_redirects -1 hands the redirect over: {message}"
        );
        assert!(message.contains(&to_port), "{message}");
        let (): () = follow.clone().set(moved, "followed").await.unwrap();
        let stored: Option<String> = cluster
            .node(to)
            .async_conn()
            .await
            .get(moved)
            .await
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some("followed"),
            "the redirect was followed to node {to}"
        );
        // The MOVED taught even the strict client the new owner.
        let seen = wait_for_async(
            "the strict client to learn the new owner",
            Duration::from_secs(10),
            || {
                let strict = strict.clone();
                async move { get::<Option<String>>(&strict, moved).await }
            },
        )
        .await;
        assert_eq!(seen.as_deref(), Some("followed"));
        // Each client's MOVED is counted, and no ASK was seen.
        let counts = redirects(&snapshotter);
        assert!(count(&counts, "follow", "moved") >= 1, "{counts:?}");
        assert!(count(&counts, "strict", "moved") >= 1, "{counts:?}");
        assert_eq!(count(&counts, "follow", "ask"), 0, "{counts:?}");
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn ask_is_followed_unless_redirects_are_off() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let (runtime, follow, strict) = follow_and_strict(&cluster).await;
        let (): () = follow.clone().set("warm", 1).await.unwrap();
        let _: Option<i64> = get(&strict, "warm").await.unwrap();

        // ASK: the slot is being migrated and the key is not on the source any more.
        let asked = "ask:{a}";
        let from = cluster.node_for_key(asked);
        let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
        let slot = RedisCluster::slot_for_key(asked).to_string();
        let mut source = cluster.node(from).async_conn().await;
        let mut target = cluster.node(to).async_conn().await;
        let from_id: String = query(&mut source, &["CLUSTER", "MYID"]).await;
        let to_id: String = query(&mut target, &["CLUSTER", "MYID"]).await;
        let (): () = query(
            &mut target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        )
        .await;
        let (): () = query(
            &mut source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        )
        .await;
        let (code, message) = code_of(strict.clone().set::<_, _, ()>(asked, "strict").await);
        assert_eq!(code, "ASK", "{message}");
        let (): () = follow.clone().set(asked, "asked").await.unwrap();
        let (stored,): (Option<String>,) = redis::pipe()
            .cmd("ASKING")
            .ignore()
            .get(asked)
            .query_async(&mut target)
            .await
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some("asked"),
            "the ASK was followed to node {to}"
        );
        let counts = redirects(&snapshotter);
        assert!(count(&counts, "follow", "ask") >= 1, "{counts:?}");
        assert!(count(&counts, "strict", "ask") >= 1, "{counts:?}");
        assert_eq!(count(&counts, "follow", "moved"), 0, "{counts:?}");
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn multi_key_commands_across_slots_get_crossslot() {
    bounded(async {
        let cluster = RedisCluster::start(3, 0);
        let runtime = start(vec![cluster_config("c", &cluster.addrs(), json!({}))]).await;
        let c = handle(&runtime, "c");
        assert_ne!(
            RedisCluster::slot_for_key("a"),
            RedisCluster::slot_for_key("b")
        );

        for args in [
            &["MSET", "a", "1", "b", "2"][..],
            &["MGET", "a", "b"],
            &["DEL", "a", "b"],
            &["EXISTS", "a", "b"],
            &["SUNIONSTORE", "a", "b"],
        ] {
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            let (code, message) = code_of(cmd.query_async::<redis::Value>(&mut c.clone()).await);
            assert_eq!(code, "CROSSSLOT", "{args:?}: {message}");
            assert!(
                message.contains("hash to the same slot"),
                "{args:?}: {message}"
            );
        }
        // Nothing was half written on one of the masters.
        let a: Option<String> = get(&c, "a").await.unwrap();
        assert_eq!(a, None);

        // Keys that share a {hashtag} share a slot, so the same commands work.
        let (): () = c
            .clone()
            .mset(&[
                ("{user:7}:name", "Ada"),
                ("{user:7}:email", "ada@example.com"),
            ])
            .await
            .unwrap();
        let both: Vec<String> = c
            .clone()
            .mget(&["{user:7}:name", "{user:7}:email"])
            .await
            .unwrap();
        assert_eq!(both, ["Ada", "ada@example.com"]);
        let (items, total): (i64, i64) = redis::pipe()
            .atomic()
            .incr("{cart:1}:items", 1)
            .incr("{cart:1}:total", 5)
            .query_async(&mut c.clone())
            .await
            .unwrap();
        assert_eq!((items, total), (1, 5));
        let removed: i64 = c
            .clone()
            .del(&["{user:7}:name", "{user:7}:email"])
            .await
            .unwrap();
        assert_eq!(removed, 2);
        runtime.shutdown().await;
    })
    .await;
}
