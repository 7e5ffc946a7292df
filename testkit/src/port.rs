//! Picking free loopback ports.
//!
//! The kernel picks a free port when we bind port 0; we release it and hand the number to
//! `redis-server`. Another process can grab it in between, so callers retry when the server
//! reports the address in use. Within this process a port is handed out only once, so parallel
//! tests never race each other for the same number (and a stopped server keeps its port for its
//! restart).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// The interface every test server listens on.
pub(crate) const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Redis Cluster's bus listens on the client port plus this offset.
pub(crate) const CLUSTER_BUS_OFFSET: u16 = 10_000;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that is free right now and was not handed out before in this process.
///
/// With `cluster_bus`, `port + 10000` is free too (and so `port <= 55535`).
pub(crate) fn free_port(cluster_bus: bool) -> u16 {
    for _ in 0..1_000 {
        let Some(port) = probe(0) else { continue };
        if cluster_bus {
            let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if probe(bus).is_none() {
                continue;
            }
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.contains(&port)
            || (cluster_bus && handed_out.contains(&(port + CLUSTER_BUS_OFFSET)))
        {
            continue;
        }
        handed_out.insert(port);
        if cluster_bus {
            handed_out.insert(port + CLUSTER_BUS_OFFSET);
        }
        return port;
    }
    panic!("could not find a free loopback port after 1000 attempts");
}

/// Binds `port` (0: any) on loopback and returns the bound port, releasing it again.
fn probe(port: u16) -> Option<u16> {
    let listener = TcpListener::bind((HOST, port)).ok()?;
    listener.local_addr().ok().map(|addr| addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port(false)).collect();
        assert_eq!(ports.len(), 50);
    }

    #[test]
    fn cluster_ports_leave_room_for_the_bus() {
        for _ in 0..20 {
            let port = free_port(true);
            assert!(port <= u16::MAX - CLUSTER_BUS_OFFSET);
            let bus = port + CLUSTER_BUS_OFFSET;
            let reserved = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(reserved.contains(&port) && reserved.contains(&bus));
            drop(reserved);
            // The other test here probes ephemeral ports at the same time and may hold the bus
            // port for an instant, so a bind that fails is tried again before it counts.
            let mut attempts = 0;
            while TcpListener::bind((HOST, bus)).is_err() {
                attempts += 1;
                assert!(attempts < 50, "bus port {bus} stayed in use");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
