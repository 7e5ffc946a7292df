//! One `redis-server` process, private to the test that starts it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binary::{self, REDIS_CLI, REDIS_SERVER};
use crate::port::{self, HOST};
use crate::tls::{ClientAuth, TlsFiles};
use crate::wait::try_wait_for;

/// How long a server gets to answer `PING` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports a first start tries when another process grabbed the port first.
const PORT_ATTEMPTS: usize = 8;
/// Connect, read and write timeout of the helper connections (`conn`, `async_conn`).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one readiness probe; a probe that times out is simply repeated.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of the log a failing test prints.
const LOG_TAIL_LINES: usize = 200;

/// Options for a [`RedisServer`]; start one with [`start`](Self::start).
///
/// ```no_run
/// use redplug_testkit::{ClientAuth, RedisServer};
/// let server = RedisServer::builder()
///     .password("s3cret")
///     .acl_user("app", "app-pass")
///     .tls(ClientAuth::Optional)
///     .persistence(true)
///     .arg("--maxclients", "5")
///     .start();
/// ```
#[derive(Clone, Default)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct RedisServerBuilder {
    password: Option<String>,
    acl_users: Vec<(String, String)>,
    tls: Option<ClientAuth>,
    persistence: bool,
    cluster: bool,
    masterauth: bool,
    sentinel: Option<Vec<Vec<String>>>,
    /// TLS files shared with other servers (one CA for a whole set), instead of its own.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls_files: Option<TlsFiles>,
    args: Vec<OsString>,
}

impl RedisServerBuilder {
    /// Requires this password for the default user (`requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Adds an ACL user with full access: the config-file form of
    /// `ACL SETUSER name on >password ~* &* +@all`.
    pub fn acl_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.acl_users.push((name.into(), password.into()));
        self
    }

    /// Serves TLS only, with certificates generated for this server (see [`RedisServer::tls`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, client_auth: ClientAuth) -> Self {
        self.tls = Some(client_auth);
        self
    }

    /// Keeps data across [`RedisServer::restart`]: append-only file, fsync on every write.
    pub fn persistence(mut self, persistence: bool) -> Self {
        self.persistence = persistence;
        self
    }

    /// Passes one more option on the command line, e.g. `.arg("--maxclients", "5")`.
    pub fn arg(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.args.push(name.as_ref().to_owned());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// Makes the server a Redis Cluster node (used by [`RedisCluster`](crate::RedisCluster)).
    pub(crate) fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Authenticates to its master with its own password (`masterauth`), as every node of a
    /// replicated set must, since any of them may become a replica (used by
    /// [`RedisSentinelSet`](crate::RedisSentinelSet)).
    pub(crate) fn masterauth(mut self) -> Self {
        self.masterauth = true;
        self
    }

    /// Uses `files` (one CA for a whole replicated set) rather than certificates of its own,
    /// with `tls` (used by [`RedisSentinelSet`](crate::RedisSentinelSet)).
    #[cfg(feature = "tls")]
    pub(crate) fn tls_files(mut self, files: TlsFiles) -> Self {
        self.tls_files = Some(files);
        self
    }

    /// Runs `redis-server --sentinel` instead of a data server, with these config lines
    /// (`sentinel monitor …` and the like) after the harness' own (used by
    /// [`RedisSentinelSet`](crate::RedisSentinelSet)).
    pub(crate) fn sentinel(mut self, lines: Vec<Vec<String>>) -> Self {
        self.sentinel = Some(lines);
        self
    }

    /// Spawns the server on a free loopback port and returns once it answers `PING`.
    ///
    /// Panics with the server log if it does not come up within 10 s, and with install
    /// instructions if `redis-server` is not on `PATH`.
    pub fn start(self) -> RedisServer {
        let program = binary::require(REDIS_SERVER);
        let redis_cli = self.tls.is_some().then(|| binary::require(REDIS_CLI));
        let dir = tempfile::Builder::new()
            .prefix("redplug-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        #[cfg(feature = "tls")]
        let tls = self.tls.map(|auth| {
            let files = self
                .tls_files
                .unwrap_or_else(|| TlsFiles::generate(dir.path()));
            (auth, files)
        });
        #[cfg(not(feature = "tls"))]
        let tls: Option<(ClientAuth, TlsFiles)> = None;
        let mut config = Config {
            program,
            redis_cli,
            dir,
            port: 0,
            password: self.password,
            acl_users: self.acl_users,
            tls,
            persistence: self.persistence,
            cluster: self.cluster,
            masterauth: self.masterauth,
            sentinel: self.sentinel,
            args: self.args,
        };

        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            config.port = port::free_port(config.cluster);
            match config.spawn_and_wait(true) {
                Ok(child) => {
                    let shared = Arc::new(Shared {
                        config,
                        state: Mutex::new(State {
                            child: Some(child),
                            dropped: false,
                        }),
                        wake: Condvar::new(),
                    });
                    return RedisServer { shared };
                }
                // Another process took the port between our probe and the server's bind.
                Err(StartFailure::PortInUse) => last_failure = "address in use".into(),
                Err(StartFailure::Other(reason)) => config.fail(&reason),
            }
        }
        config.fail(&format!(
            "no free port after {PORT_ATTEMPTS} attempts ({last_failure})"
        ))
    }
}

/// A `redis-server` on a free loopback port with its own temp dir; killed on drop.
///
/// When the test panics, dropping the server prints its log to stderr (shown with the test's
/// failure output).
///
/// ```no_run
/// let server = redplug_testkit::RedisServer::start();
/// let mut con = server.conn();
/// let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
/// ```
pub struct RedisServer {
    shared: Arc<Shared>,
}

impl RedisServer {
    /// Starts a plain server: no password, no TLS, no persistence.
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    /// Options for a server with a password, ACL users, TLS, persistence or extra arguments.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `"127.0.0.1:PORT"` (the TLS port for a TLS server).
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port())
    }

    /// The port clients connect to; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.shared.config.port
    }

    /// A URL for `redis::Client::open`, with the password if one is set:
    /// `redis://:PASSWORD@127.0.0.1:PORT`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        self.shared.config.url(None, self.password())
    }

    /// The URL for logging in as `user` with `password` (for ACL users).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.shared.config.url(Some(user), Some(password))
    }

    /// The default user's password, if the server requires one.
    pub fn password(&self) -> Option<&str> {
        self.shared.config.password.as_deref()
    }

    /// The generated certificates, if this is a TLS server.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.shared.config.tls.as_ref().map(|(_, files)| files)
    }

    /// A client for assertions, logged in with the password if set and, for TLS, trusting the
    /// test CA and presenting the client certificate.
    ///
    /// Use it sync (`get_connection`) or async (`get_multiplexed_async_connection`).
    pub fn client(&self) -> redis::Client {
        self.shared.config.client(None, self.password())
    }

    /// Like [`client`](Self::client), logged in as `user`.
    pub fn client_as(&self, user: &str, password: &str) -> redis::Client {
        self.shared.config.client(Some(user), Some(password))
    }

    /// A blocking connection for assertions (5 s timeouts); panics with the log if it fails.
    pub fn conn(&self) -> redis::Connection {
        let connection = self
            .client()
            .get_connection_with_timeout(IO_TIMEOUT)
            .and_then(|con| {
                con.set_read_timeout(Some(IO_TIMEOUT))?;
                con.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(con)
            });
        connection.unwrap_or_else(|e| self.fail(&format!("cannot connect: {e}")))
    }

    /// An async connection for assertions (5 s timeouts rather than redis-rs' 500 ms, which a
    /// busy test machine can exceed); panics with the log if it fails.
    pub async fn async_conn(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let connection = self
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        connection.unwrap_or_else(|e| self.fail(&format!("cannot connect: {e}")))
    }

    /// The server's temp dir (data, log, certificates).
    pub fn dir(&self) -> &Path {
        self.shared.config.dir.path()
    }

    /// The server's log so far (including anything it printed before opening its log file).
    pub fn log(&self) -> String {
        self.shared.config.log()
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().running().map(|child| child.id())
    }

    /// Whether the process is alive (it may have been stopped, or have exited on its own).
    pub fn is_running(&self) -> bool {
        self.shared.lock().running().is_some()
    }

    /// Kills the server (`SIGKILL`, like a crash) and waits for it to exit. Connections fail
    /// from now on. Idempotent.
    pub fn stop(&self) {
        self.shared.lock().kill();
    }

    /// Freezes the process (`SIGSTOP`): its sockets stay open and the kernel still accepts new
    /// connections into the listen backlog, but nothing is read or answered, as with a server
    /// stuck on a slow disk or a paused VM. Undo with [`thaw`](Self::thaw); dropping the server
    /// kills it frozen or not.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a [frozen](Self::freeze) server run again (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self
            .pid()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw);
        let Some(pid) = pid else {
            self.fail(&format!(
                "cannot send {signal:?}: the server is not running"
            ));
        };
        if let Err(error) = rustix::process::kill_process(pid, signal) {
            self.fail(&format!("cannot send {signal:?}: {error}"));
        }
    }

    /// Closes every client connection the server has (`CLIENT KILL TYPE normal`), as a
    /// server-side timeout, a proxy or a network blip would: the clients' next command finds its
    /// socket closed. The server keeps running with its data. Returns how many were closed.
    pub fn kill_clients(&self) -> usize {
        let mut con = self.conn();
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut con)
            .unwrap_or_else(|e| self.fail(&format!("CLIENT KILL failed: {e}")))
    }

    /// Empties the server's script cache (`SCRIPT FLUSH`), as a failover to a replica or a
    /// restart does: the next `EVALSHA` of every script answers `NOSCRIPT`.
    pub fn flush_scripts(&self) {
        let mut con = self.conn();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .exec(&mut con)
            .unwrap_or_else(|e| self.fail(&format!("SCRIPT FLUSH failed: {e}")));
    }

    /// Whether the server's script cache holds the script with this SHA1 (`SCRIPT EXISTS`).
    pub fn has_script(&self, sha1: &str) -> bool {
        let mut con = self.conn();
        let found: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(sha1)
            .query(&mut con)
            .unwrap_or_else(|e| self.fail(&format!("SCRIPT EXISTS failed: {e}")));
        found == [true]
    }

    /// Starts the server again on the same port and dir (so with persistence the data is still
    /// there), stopping it first if it runs. Returns once it answers `PING`.
    pub fn restart(&self) {
        let mut state = self.shared.lock();
        if let Err(message) = self.shared.restart(&mut state) {
            drop(state);
            // The message carries the log already.
            panic!("{message}")
        }
    }

    /// Stops the server, waits `downtime`, and restarts it. Blocks the thread throughout; in
    /// async tests that need their own tasks to run meanwhile, use
    /// [`restart_after`](Self::restart_after).
    pub fn stop_for(&self, downtime: Duration) {
        self.stop();
        thread::sleep(downtime);
        self.restart();
    }

    /// Stops the server now and restarts it in the background after `downtime`, for tests
    /// that exercise clients while the server is away. Dropping the returned handle does not
    /// cancel the restart; dropping the server does.
    pub fn restart_after(&self, downtime: Duration) -> Restart {
        self.stop();
        let shared = Arc::clone(&self.shared);
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + downtime;
            let mut state = shared.lock();
            while !state.dropped {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                state = shared
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if state.dropped {
                return Ok(());
            }
            shared.restart(&mut state)
        });
        Restart {
            handle,
            addr: self.addr(),
        }
    }

    /// Panics with `reason` and the server log.
    fn fail(&self, reason: &str) -> ! {
        self.shared.config.fail(reason)
    }

    /// The end of the log with a header naming the server, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        self.shared.config.log_tail()
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No password here: secrets stay out of Debug output.
        f.debug_struct("RedisServer")
            .field("addr", &self.addr())
            .field("tls", &self.shared.config.tls.is_some())
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.dropped = true;
            state.kill();
        }
        self.shared.wake.notify_all();
        if thread::panicking() {
            eprintln!("{}", self.shared.config.log_tail());
        }
    }
}

/// A restart scheduled by [`RedisServer::restart_after`].
#[derive(Debug)]
pub struct Restart {
    handle: JoinHandle<Result<(), String>>,
    addr: String,
}

impl Restart {
    /// Whether the server is back (or the restart failed).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Blocks until the server is back; panics if it did not come up.
    pub fn join(self) {
        match self.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => panic!("{reason}"),
            Err(_) => panic!("the restart thread of redis-server {} panicked", self.addr),
        }
    }

    /// Waits without blocking the async runtime until the server is back; panics if it did
    /// not come up.
    pub async fn wait(self) {
        while !self.handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.join();
    }
}

struct Shared {
    config: Config,
    state: Mutex<State>,
    /// Wakes a pending [`Restart`] when the server is dropped.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test must still be able to stop its server.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn restart(&self, state: &mut State) -> Result<(), String> {
        state.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.config.spawn_and_wait(false) {
                Ok(child) => {
                    state.child = Some(child);
                    return Ok(());
                }
                // The port must stay the same, so wait for whoever holds it to let go.
                Err(StartFailure::PortInUse) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(StartFailure::PortInUse) => {
                    return Err(self.config.failure_message(&format!(
                        "cannot restart: port {} stayed in use",
                        self.config.port
                    )));
                }
                Err(StartFailure::Other(reason)) => {
                    return Err(self.config.failure_message(&reason));
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Normally the process is gone already; this covers a restart racing the drop.
        self.lock().kill();
    }
}

struct State {
    child: Option<Child>,
    dropped: bool,
}

impl State {
    /// The process, if it has not exited (reaping it if it has).
    fn running(&mut self) -> Option<&mut Child> {
        let child = self.child.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then_some(child)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Reap it: no zombies, and the port is free once this returns.
            let _ = child.wait();
        }
    }
}

enum StartFailure {
    PortInUse,
    Other(String),
}

/// Everything needed to (re)start the same server.
struct Config {
    program: PathBuf,
    /// Probes TLS servers (we keep rustls' process-wide provider untouched for the tests).
    redis_cli: Option<PathBuf>,
    dir: TempDir,
    port: u16,
    password: Option<String>,
    acl_users: Vec<(String, String)>,
    tls: Option<(ClientAuth, TlsFiles)>,
    persistence: bool,
    cluster: bool,
    masterauth: bool,
    /// Sentinel mode, with the sentinel's own config lines.
    sentinel: Option<Vec<Vec<String>>>,
    args: Vec<OsString>,
}

impl Config {
    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("redis.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Where stdout/stderr go: config errors are printed before the log file is open.
    fn output_path(&self) -> PathBuf {
        self.dir.path().join("redis.out")
    }

    /// The config file. A file rather than arguments so that any password survives quoting.
    fn conf(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        let mut set = |words: &[&str]| {
            lines.push(words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "))
        };
        let dir = path_str(self.dir.path());
        let log = path_str(&self.log_path());
        set(&["bind", "127.0.0.1"]);
        set(&["daemonize", "no"]);
        set(&["dir", &dir]);
        set(&["logfile", &log]);
        if let Some(sentinel) = &self.sentinel {
            // A sentinel keeps no data: only where it listens, who may talk to it, and what it
            // monitors.
            // Its connections to the data nodes and the other sentinels use TLS too.
            for words in self.listen_conf(true) {
                set(&words.iter().map(String::as_str).collect::<Vec<_>>());
            }
            if let Some(password) = &self.password {
                set(&["requirepass", password]);
            }
            for words in sentinel {
                set(&words.iter().map(String::as_str).collect::<Vec<_>>());
            }
            return lines.join("\n") + "\n";
        }
        set(&["save", ""]);
        // Lets fault tests use DEBUG SLEEP and friends.
        set(&["enable-debug-command", "local"]);
        // Replicas sync at once instead of after Redis' default 5 s wait.
        set(&["repl-diskless-sync-delay", "0"]);
        if self.persistence {
            set(&["appendonly", "yes"]);
            set(&["appendfsync", "always"]);
        } else {
            set(&["appendonly", "no"]);
        }
        // A node of a replicated set replicates over TLS too.
        for words in self.listen_conf(self.masterauth) {
            set(&words.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if let Some(password) = &self.password {
            set(&["requirepass", password]);
            if self.cluster || self.masterauth {
                set(&["masterauth", password]);
            }
        }
        for (name, password) in &self.acl_users {
            set(&[
                "user",
                name,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ]);
        }
        if self.cluster {
            set(&["cluster-enabled", "yes"]);
            set(&["cluster-config-file", "nodes.conf"]);
            // Short, so failover tests take seconds.
            set(&["cluster-node-timeout", "1000"]);
            // Any replica may take over, however long it was disconnected.
            set(&["cluster-replica-validity-factor", "0"]);
        }
        lines.join("\n") + "\n"
    }

    /// Where the server listens: `port`, or with TLS only `tls-port` with its certificates.
    /// With `outgoing`, the connections it makes itself (replication, a sentinel's) use TLS
    /// and the client certificate too.
    fn listen_conf(&self, outgoing: bool) -> Vec<Vec<String>> {
        let port = self.port.to_string();
        let Some((auth, files)) = &self.tls else {
            return vec![vec!["port".into(), port]];
        };
        let line = |key: &str, value: String| vec![key.to_owned(), value];
        let mut lines = vec![
            line("port", "0".into()),
            line("tls-port", port),
            line("tls-cert-file", path_str(&files.server_cert)),
            line("tls-key-file", path_str(&files.server_key)),
            line("tls-ca-cert-file", path_str(&files.ca_cert)),
            line("tls-auth-clients", auth.redis_value().into()),
        ];
        if outgoing {
            lines.push(line("tls-replication", "yes".into()));
            lines.push(line("tls-client-cert-file", path_str(&files.client_cert)));
            lines.push(line("tls-client-key-file", path_str(&files.client_key)));
        }
        lines
    }

    /// Starts the process; `fresh` on a first start, not on a restart.
    fn spawn(&self, fresh: bool) -> Result<Child, String> {
        // A sentinel rewrites its config file with what it learned (other sentinels, replicas,
        // the current master and epoch); a restarted sentinel must find that, as a real one does.
        if fresh || self.sentinel.is_none() {
            fs::write(self.conf_path(), self.conf())
                .map_err(|e| format!("cannot write redis.conf: {e}"))?;
        }
        let output = File::options()
            .create(true)
            .append(true)
            .open(self.output_path())
            .map_err(|e| format!("cannot open redis.out: {e}"))?;
        let stderr = output.try_clone().map_err(|e| e.to_string())?;
        Command::new(&self.program)
            .arg(self.conf_path())
            .args(self.sentinel.is_some().then_some("--sentinel"))
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))
    }

    fn spawn_and_wait(&self, fresh: bool) -> Result<Child, StartFailure> {
        let mut child = self.spawn(fresh).map_err(StartFailure::Other)?;
        let ready = try_wait_for(START_TIMEOUT, || match child.try_wait() {
            Ok(Some(status)) => Ok(Err(status)),
            Ok(None) => self.probe().map(Ok),
            Err(e) => Err(format!("cannot check the process: {e}")),
        });
        match ready {
            Ok(Ok(())) => Ok(child),
            Ok(Err(status)) => {
                if self.log().contains("Address already in use") {
                    // The log is shared by all attempts; mark where this one ended.
                    self.note("harness: port in use, retrying");
                    Err(StartFailure::PortInUse)
                } else {
                    Err(StartFailure::Other(format!(
                        "redis-server exited ({status})"
                    )))
                }
            }
            Err(last) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(StartFailure::Other(format!(
                    "it did not answer PING within {START_TIMEOUT:?} (last probe: {last})"
                )))
            }
        }
    }

    /// `Ok` once the server answers commands (anything but `LOADING`).
    fn probe(&self) -> Result<(), String> {
        match &self.tls {
            Some((_, files)) => self.probe_tls(files),
            None => self.probe_plain(),
        }
    }

    fn probe_plain(&self) -> Result<(), String> {
        let addr = SocketAddr::from((HOST, self.port));
        let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(PROBE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut request = Vec::new();
        if let Some(password) = &self.password {
            request.extend(resp(&["AUTH", password]));
        }
        request.extend(resp(&["PING"]));
        (&stream).write_all(&request).map_err(|e| e.to_string())?;
        let mut replies = BufReader::new(&stream);
        let mut reply = String::new();
        for _ in 0..1 + usize::from(self.password.is_some()) {
            reply.clear();
            replies.read_line(&mut reply).map_err(|e| e.to_string())?;
        }
        ready_reply(reply.trim_end())
    }

    fn probe_tls(&self, files: &TlsFiles) -> Result<(), String> {
        let redis_cli = self
            .redis_cli
            .as_ref()
            .expect("redis-cli is looked up for TLS servers");
        let mut command = Command::new(redis_cli);
        command
            .args(["--tls", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--cacert")
            .arg(&files.ca_cert)
            .arg("--cert")
            .arg(&files.client_cert)
            .arg("--key")
            .arg(&files.client_key)
            .arg("PING");
        if let Some(password) = &self.password {
            // Through the environment, so the password is not in the process list.
            command.env("REDISCLI_AUTH", password);
        }
        let output = run_bounded(&mut command, IO_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout.trim() {
            "" => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
            reply => ready_reply(reply),
        }
    }

    fn url(&self, user: Option<&str>, password: Option<&str>) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let credentials = match (user, password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                percent_encode(user.unwrap_or("")),
                percent_encode(password.unwrap_or(""))
            ),
        };
        format!("{scheme}://{credentials}{HOST}:{}", self.port)
    }

    fn client(&self, user: Option<&str>, password: Option<&str>) -> redis::Client {
        let url = self.url(user, password);
        let client = match &self.tls {
            Some((_, files)) => redis::Client::build_with_tls(url, files.redis_certificates(true)),
            None => redis::Client::open(url),
        };
        client.unwrap_or_else(|e| self.fail(&format!("cannot build a client: {e}")))
    }

    fn log(&self) -> String {
        let mut log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let output = fs::read_to_string(self.output_path()).unwrap_or_default();
        if !output.trim().is_empty() {
            log.push_str("--- stdout/stderr ---\n");
            log.push_str(&output);
        }
        log
    }

    /// Appends a harness note to the output file, so the log tells what the harness did.
    fn note(&self, note: &str) {
        if let Ok(mut file) = File::options()
            .create(true)
            .append(true)
            .open(self.output_path())
        {
            let _ = writeln!(file, "{note}");
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let skipped = lines.len().saturating_sub(LOG_TAIL_LINES);
        let mut out = format!(
            "---- redis-server {HOST}:{} log ({}) ----\n",
            self.port,
            path_str(&self.log_path())
        );
        if skipped > 0 {
            out.push_str(&format!("[{skipped} earlier lines omitted]\n"));
        }
        for line in &lines[skipped..] {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("---- end of log ----");
        out
    }

    fn failure_message(&self, reason: &str) -> String {
        format!(
            "redis-server on {HOST}:{}: {reason}\n{}",
            self.port,
            self.log_tail()
        )
    }

    fn fail(&self, reason: &str) -> ! {
        panic!("{}", self.failure_message(reason))
    }
}

/// Whether a reply to `PING` shows a server that serves commands. `NOAUTH` and the like count:
/// the server answers, it just wants something else from this probe.
fn ready_reply(reply: &str) -> Result<(), String> {
    let reply = reply.trim_start_matches(['+', '-']);
    if reply.is_empty() || reply.starts_with("LOADING") {
        Err(format!("not ready yet: {reply:?}"))
    } else {
        Ok(())
    }
}

/// Runs `command` to completion, killing it if it takes longer than `timeout` (redis-cli 7.0
/// has no connect timeout of its own).
fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let deadline = Instant::now() + timeout;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{:?} took longer than {timeout:?}",
                command.get_program()
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    // The outputs are a line or two: they fit the pipe buffers, so waiting first cannot block.
    child.wait_with_output().map_err(|e| e.to_string())
}

/// A command in RESP, the protocol clients speak.
fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend(format!("${}\r\n", word.len()).into_bytes());
        out.extend(word.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

/// A config-file token in double quotes, escaped the way Redis' argument splitter reads it.
fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes a URL user-info part; redis-rs decodes it again.
fn percent_encode(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("temp dir path is not UTF-8: {}", path.display()))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_can_be_shared_across_threads_and_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<RedisServer>();
        send_sync::<Restart>();
    }

    #[test]
    fn a_port_taken_by_someone_else_is_reported_as_such() {
        // What `start` retries on: another process bound the port after we probed it.
        let taken = std::net::TcpListener::bind((HOST, 0)).unwrap();
        let mut config = Config {
            program: binary::require(REDIS_SERVER),
            redis_cli: None,
            dir: tempfile::tempdir().unwrap(),
            port: taken.local_addr().unwrap().port(),
            password: None,
            acl_users: Vec::new(),
            tls: None,
            persistence: false,
            cluster: false,
            masterauth: false,
            sentinel: None,
            args: Vec::new(),
        };
        assert!(
            matches!(config.spawn_and_wait(true), Err(StartFailure::PortInUse)),
            "{}",
            config.log()
        );
        drop(taken);
        config.port = port::free_port(false);
        let mut child = config
            .spawn_and_wait(true)
            .unwrap_or_else(|_| panic!("{}", config.log()));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn quotes_survive_redis_argument_splitting() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quote(""), r#""""#);
        assert_eq!(quote("tab\there"), r#""tab\x09here""#);
    }

    #[test]
    fn user_info_is_percent_encoded() {
        assert_eq!(percent_encode("p@ss:w/rd ok"), "p%40ss%3Aw%2Frd%20ok");
        assert_eq!(percent_encode("plain-_.~"), "plain-_.~");
    }

    #[test]
    fn loading_is_not_ready_but_auth_errors_are() {
        assert!(ready_reply("+PONG").is_ok());
        assert!(ready_reply("-NOAUTH Authentication required.").is_ok());
        assert!(ready_reply("-LOADING Redis is loading the dataset in memory").is_err());
        assert!(ready_reply("LOADING Redis is loading the dataset in memory").is_err());
        assert!(ready_reply("").is_err());
    }

    #[test]
    fn resp_encodes_bulk_strings() {
        assert_eq!(resp(&["AUTH", "p w"]), b"*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n");
    }
}
