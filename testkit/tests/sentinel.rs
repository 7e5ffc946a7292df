//! The Sentinel harness against real `redis-server --sentinel` processes: a set starts ready to
//! fail over, and a failover promotes the replica with the master's data.

use std::time::{Duration, Instant};

use redplug_testkit::{ClientAuth, RedisSentinelSet};

fn query<T: redis::FromRedisValue>(
    con: &mut impl redis::ConnectionLike,
    cmd: &mut redis::Cmd,
) -> T {
    cmd.query(con).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn master_addr(con: &mut impl redis::ConnectionLike, name: &str) -> String {
    let (ip, port): (String, u16) = query(
        con,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name),
    );
    format!("{ip}:{port}")
}

#[test]
fn killing_the_master_promotes_the_replica_with_its_data() {
    let set = RedisSentinelSet::start();
    assert_eq!(set.master_name(), "mymaster");
    assert_eq!(set.nodes().len(), 2);
    assert_eq!(set.sentinel_addrs().len(), 3);
    assert_eq!(set.master(), 0);
    for (i, addr) in set.sentinel_addrs().iter().enumerate() {
        assert_eq!(*addr, set.sentinel(i).addr());
        let mut con = set.sentinel(i).conn();
        assert_eq!(
            master_addr(&mut con, set.master_name()),
            set.nodes()[0].addr(),
            "sentinel {addr}"
        );
    }

    let mut master = set.nodes()[0].conn();
    query::<()>(&mut master, redis::cmd("SET").arg("survivor").arg("yes"));
    // Replication is asynchronous: make sure the replica has the key before the master dies.
    let acked: i64 = query(&mut master, redis::cmd("WAIT").arg(1).arg(5_000));
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let killed = set.kill_master();
    assert_eq!(killed, 0);
    assert!(!set.nodes()[0].is_running());
    let started = Instant::now();
    let promoted = set.wait_for_failover(killed, Duration::from_secs(15));
    println!("failover took {:?}", started.elapsed());

    assert_eq!(promoted, 1);
    assert_eq!(set.master(), promoted);
    let mut con = set.nodes()[promoted].conn();
    let value: Option<String> = query(&mut con, redis::cmd("GET").arg("survivor"));
    assert_eq!(value.as_deref(), Some("yes"));
    let role: redis::Value = query(&mut con, &mut redis::cmd("ROLE"));
    let redis::Value::Array(role) = role else {
        panic!("ROLE answered {role:?}");
    };
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
    for i in 0..set.sentinel_addrs().len() {
        let mut sentinel = set.sentinel(i).conn();
        assert_eq!(
            master_addr(&mut sentinel, set.master_name()),
            set.nodes()[promoted].addr()
        );
    }
}

#[test]
fn passwords_protect_the_data_nodes_and_the_sentinels() {
    let set = RedisSentinelSet::builder()
        .master_name("secured")
        .password("data-pass")
        .sentinel_password("sentinel-pass")
        .start();
    assert_eq!(set.master_name(), "secured");

    let sentinel = set.sentinel(0);
    assert_eq!(sentinel.password(), Some("sentinel-pass"));
    // Without the password the sentinel refuses to answer.
    let anonymous = redis::Client::open(format!("redis://{}", sentinel.addr()))
        .expect("a client without a password");
    let mut anonymous = anonymous
        .get_connection()
        .expect("connect to the sentinel without a password");
    let refused = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("secured")
        .query::<Vec<String>>(&mut anonymous)
        .expect_err("the sentinel must refuse clients without the password");
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");

    // With it (`conn()` sends AUTH), it names the master, which wants its own password.
    let mut con = sentinel.conn();
    let addr = master_addr(&mut con, "secured");
    assert_eq!(addr, set.nodes()[0].addr());
    let master = &set.nodes()[0];
    assert_eq!(master.password(), Some("data-pass"));
    let mut data = master.conn();
    assert_eq!(query::<String>(&mut data, &mut redis::cmd("PING")), "PONG");
}

#[test]
fn a_restarted_sentinel_remembers_the_set() {
    let set = RedisSentinelSet::start();
    let sentinel = set.sentinel(2);
    let id_before: String = query(&mut sentinel.conn(), redis::cmd("SENTINEL").arg("MYID"));
    sentinel.stop();
    assert!(!sentinel.is_running());
    sentinel.restart();

    // Same port, same identity, and it still watches the master with the other sentinels.
    let mut con = sentinel.conn();
    let id_after: String = query(&mut con, redis::cmd("SENTINEL").arg("MYID"));
    assert_eq!(id_after, id_before);
    assert_eq!(
        master_addr(&mut con, set.master_name()),
        set.nodes()[0].addr()
    );
    let others: Vec<redis::Value> = query(
        &mut con,
        redis::cmd("SENTINEL")
            .arg("SENTINELS")
            .arg(set.master_name()),
    );
    assert_eq!(others.len(), 2);
}

#[test]
#[should_panic(expected = "no failover away from node 0")]
fn a_failover_that_cannot_happen_times_out_with_a_clear_message() {
    // No replica to promote.
    let set = RedisSentinelSet::builder().replicas(0).start();
    let killed = set.kill_master();
    set.wait_for_failover(killed, Duration::from_secs(2));
}

/// A TLS-only set: every process listens with TLS alone, replication and the sentinels' own
/// connections use it, and the sentinels still fail the master over.
#[test]
fn a_tls_set_fails_over_too() {
    let set = RedisSentinelSet::builder()
        .tls(ClientAuth::Required)
        .start();
    let files = set.tls().expect("a TLS set has certificates").clone();
    assert!(files.ca_cert.exists(), "{}", files.ca_cert.display());
    let old = set.kill_master();
    let new = set.wait_for_failover(old, Duration::from_secs(20));
    assert_ne!(new, old);
    assert_eq!(set.master(), new);
}
