//! A path to Redis that is not loopback: a network namespace joined to this one by a veth pair,
//! with a `redis-server` inside the namespace. No delay is added; what differs from loopback is
//! that the client sees a peer on another host, so redplug keeps `TCP_NODELAY` on, and that
//! every segment crosses a (virtual) link with its own TCP stack on the far side.
//!
//! Creating namespaces and links needs root (`CAP_NET_ADMIN`) and iproute2's `ip`. Everything
//! made here is removed on drop, also when the bench panics; a run that was killed leaves its
//! namespace behind, and the next run removes it (names carry the pid of the run that made them).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Names of the namespaces this bench makes: the prefix and the pid of the run.
const NAMESPACE_PREFIX: &str = "redplug-bench-";
/// The server's port inside its namespace, which it has to itself.
pub const PORT: u16 = 6379;
/// How long the server gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the veth path is not available.
pub enum Unavailable {
    /// Not running as root: the bench says so and runs the loopback rows.
    NotRoot,
    /// Root, but setting the path up failed; the message says which step.
    Failed(String),
}

/// A namespace, the veth pair into it, and the `redis-server` inside; all removed on drop.
pub struct VethServer {
    namespace: String,
    host_link: String,
    server_ip: Ipv4Addr,
    namespace_made: bool,
    link_made: bool,
    server: Option<Child>,
}

impl VethServer {
    /// Makes the namespace and the link, starts the server and waits until it answers.
    pub fn start() -> Result<VethServer, Unavailable> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable::NotRoot);
        }
        remove_stale_namespaces();
        let pid = std::process::id();
        // RFC 2544's benchmarking range (198.18.0.0/15), one /30 per run, so that the pair's
        // addresses clash with no real network and two runs do not clash with each other.
        let block = (pid % 32_768) * 4;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block;
        let host_ip = Ipv4Addr::from(base + 1);
        let server_ip = Ipv4Addr::from(base + 2);
        let mut veth = VethServer {
            namespace: format!("{NAMESPACE_PREFIX}{pid}"),
            host_link: format!("rpb{pid}h"),
            server_ip,
            namespace_made: false,
            link_made: false,
            server: None,
        };
        let peer_link = format!("rpb{pid}n");
        let ns = veth.namespace.clone();
        let host = veth.host_link.clone();

        ip(&["netns", "add", &ns])?;
        veth.namespace_made = true;
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &peer_link, "netns", &ns,
        ])?;
        veth.link_made = true;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{server_ip}/30"),
            "dev",
            &peer_link,
        ])?;
        ip(&["-n", &ns, "link", "set", &peer_link, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;

        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "redis-server"])
            .args(["--bind", &server_ip.to_string()])
            .args(["--port", &PORT.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| Unavailable::Failed(format!("cannot start redis-server in {ns}: {e}")))?;
        veth.server = Some(child);
        veth.wait_until_up()?;
        Ok(veth)
    }

    /// `host:port` of the server, as a pool's `address`.
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.server_ip)
    }

    pub fn host(&self) -> String {
        self.server_ip.to_string()
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    fn wait_until_up(&mut self) -> Result<(), Unavailable> {
        let addr = SocketAddr::from((self.server_ip, PORT));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(server) = &mut self.server
                && let Ok(Some(status)) = server.try_wait()
            {
                return Err(Unavailable::Failed(format!(
                    "redis-server in {} exited at start ({status})",
                    self.namespace
                )));
            }
            if ping(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Unavailable::Failed(format!(
                    "redis-server in {} did not answer PING at {addr} within {START_TIMEOUT:?}",
                    self.namespace
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VethServer {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // `ip netns exec` execs the server, so this is the server's own pid.
            let _ = server.kill();
            let _ = server.wait();
        }
        // Deleting the namespace deletes its end of the pair, and with it the pair.
        if self.namespace_made
            && let Err(Unavailable::Failed(message)) = ip(&["netns", "del", &self.namespace])
        {
            eprintln!(
                "warning: {message}; remove it with `ip netns del {}`",
                self.namespace
            );
        }
        if self.link_made && link_exists(&self.host_link) {
            let _ = ip(&["link", "del", &self.host_link]);
        }
    }
}

/// Runs `ip ARGS`, with its error output in the failure.
fn ip(args: &[&str]) -> Result<(), Unavailable> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Unavailable::Failed(format!(
                "cannot run `ip` ({e}); install iproute2 for the veth rows"
            ))
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Unavailable::Failed(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Removes namespaces left by runs of this bench that were killed.
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name.strip_prefix(NAMESPACE_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            eprintln!("removing the namespace {name} left by an earlier run");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Whether a Redis answers `PING` at `addr`.
fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    tcp.write_all(b"PING\r\n").is_ok()
        && tcp.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
