//! How a pooled connection's socket batches its writes and watches for replies.
//!
//! Many tasks share one socket, and each of their commands is small. Written one segment per
//! command, every command costs a segment on our side and a wake-up, a read and an event-loop
//! turn on the server, which on a gateway host often shares the cores with us. Two rules
//! batch them without ever holding a command for long:
//!
//! 1. **To a server on this host, Nagle's algorithm stays on for small writes.** While a
//!    segment is unacknowledged the kernel queues further small writes and sends them
//!    together once the acknowledgement is in. The server's reply carries that
//!    acknowledgement, so the queued commands leave from inside the server's own `write`,
//!    without waking us at all. Holding a command costs it nothing here, because on a shared
//!    connection its reply comes after the earlier replies anyway, and the acknowledgement
//!    that releases it crosses no wire. To a server across a network the acknowledgement is a
//!    round trip away, so every held command would pay up to one more round trip: there,
//!    `TCP_NODELAY` stays set, as go-redis, hiredis and Lettuce set it.
//! 2. **Large writes are pushed.** Nagle's known trap is a write longer than a segment: the
//!    kernel holds its tail until the head is acknowledged, and the server, waiting for the rest
//!    of the command, delays that acknowledgement (up to 40 ms on Linux). A batch that does
//!    not fit in one segment therefore goes out with `TCP_NODELAY` set, and the next small
//!    batch clears it again; setting it flushes whatever the kernel holds.
//!
//! On top of either rule the connection's driver batches in user space: it lets the tasks a
//! read answered queue their next commands before it writes again (see [`super::wire`]), and
//! a busy pool spreads its commands over several connections (`pool::lane`), so that the
//! server works through one batch while the client gathers the next (`benches/NOTES.md` has
//! what both measured, to this host and across a network).
//!
//! Connections are set up (TLS, `HELLO`, `AUTH`) with `TCP_NODELAY`, since a handshake's
//! flights are not answered until they are complete; rule 1 starts when [`Coalescing`] takes
//! the stream over.
//!
//! The same stream also keeps the **reply deadline** of the commands a pool counts in a
//! connection's [`Backlog`] (those on its shared lane): while any of them waits, the server must
//! send something at least once per reply timeout, as a go-redis read deadline renewed by every
//! reply. One timer per connection keeps it rather than one per command, since arming and
//! clearing a timer per command is a real part of a loaded client's work. When the deadline
//! passes, reading fails with a timeout, which ends the
//! connection and every command on it; [`Backlog::timed_out`] then tells their callers why.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// What TLS adds to a batch on its way to the socket: record headers and tags, a few dozen
/// bytes per 16 KiB record. Batches within this of a segment are pushed too.
const TLS_MARGIN: usize = 256;

/// The commands a pool runs on one connection, counted as they start and finish: whether the
/// connection is idle, and since when its commands wait. Only the shared lane's commands are
/// counted; exclusive connections count none, so they have no reply deadline.
#[derive(Debug)]
pub(crate) struct Backlog {
    started: AtomicU64,
    finished: AtomicU64,
    /// When the connection last went from no command in flight to one, as nanoseconds since
    /// `epoch`: where a wait for replies starts.
    busy_since: AtomicU64,
    /// The reply deadline passed and the connection ended.
    timed_out: AtomicBool,
    epoch: Instant,
}

impl Default for Backlog {
    fn default() -> Self {
        Self {
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }
}

impl Backlog {
    /// Counts a command as started until the returned guard is dropped.
    pub(crate) fn track(&self) -> Tracked<'_> {
        if self.unanswered() == 0 {
            // Stored before the command counts, so that whoever sees the command also sees
            // when its wait began.
            let since = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.busy_since.store(since, Ordering::Relaxed);
        }
        self.started.fetch_add(1, Ordering::Release);
        Tracked(self)
    }

    /// Commands started so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Commands started and not yet finished.
    pub(crate) fn unanswered(&self) -> u64 {
        let finished = self.finished.load(Ordering::Relaxed);
        self.started().saturating_sub(finished)
    }

    /// Whether the connection ended because the server did not answer within the reply
    /// timeout: its commands then fail with broken-pipe errors that really are timeouts.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// When the connection last went from idle to busy.
    fn busy_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.busy_since.load(Ordering::Relaxed))
    }
}

/// A command in flight; see [`Backlog::track`].
pub(crate) struct Tracked<'a>(&'a Backlog);

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// The reply deadline of a connection's counted commands (see the module documentation).
struct ReplyDeadline {
    /// The commands on the connection, as the pool counts them.
    backlog: Arc<Backlog>,
    timeout: Duration,
    /// Made on first use; set to the current wait's deadline or an earlier one while `set`.
    timer: Option<Pin<Box<Sleep>>>,
    set: bool,
    /// When bytes last came back.
    last_read: Instant,
}

impl ReplyDeadline {
    fn new(backlog: Arc<Backlog>, timeout: Duration) -> Self {
        Self {
            backlog,
            timeout,
            timer: None,
            set: false,
            last_read: Instant::now(),
        }
    }

    /// Called whenever a read finds nothing to read. Fails once the counted commands waited a
    /// whole timeout without a byte from the server; otherwise makes sure the task is woken
    /// when that would be.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let backlog = &*self.backlog;
        if backlog.unanswered() == 0 {
            // A timer still set only wakes the task once for nothing.
            self.set = false;
            return Ok(());
        }
        // Polled once when set, the timer holds this task's waker (the stream is only ever
        // polled by its connection's driver) and wakes it when due: until then a look at its
        // state is all a read needs.
        let fired = match &self.timer {
            Some(timer) if self.set => {
                if !timer.is_elapsed() {
                    return Ok(());
                }
                true
            }
            _ => false,
        };
        // The wait started with the first command of this busy spell or with the last reply,
        // whichever came later. Both only move forward, so a timer set for an earlier wait
        // fires early, never late.
        let deadline = self.last_read.max(backlog.busy_since()) + self.timeout;
        let deadline = tokio::time::Instant::from_std(deadline);
        let expired = if fired && tokio::time::Instant::now() >= deadline {
            true
        } else {
            // Not set yet, or set for an earlier wait: set it for this one.
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.set = true;
            self.timer
                .as_mut()
                .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
        };
        if !expired {
            return Ok(());
        }
        backlog.timed_out.store(true, Ordering::Release);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server sent no reply for {:?} while commands waited",
                self.timeout
            ),
        ))
    }
}

/// A byte stream whose TCP socket's Nagle setting can be changed while it runs.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// The TCP socket underneath, if there is one.
    fn tcp(&self) -> Option<&TcpStream>;
}

impl Transport for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Transport for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.get_ref().0)
    }
}

/// A stream that batches writes and keeps the reply deadline by the rules in the module
/// documentation.
pub(crate) struct Coalescing<S> {
    inner: S,
    /// Set when counted commands have a reply timeout.
    deadline: Option<ReplyDeadline>,
    /// Nagle's algorithm is used for small batches: the server is on this host (rule 1).
    nagle: bool,
    /// Batches of this many bytes or more are pushed past Nagle's algorithm.
    push_from: usize,
    /// Nagle's algorithm is off for the current batch.
    pushing: bool,
    /// A batch is being written, and its first write chose whether to push it. Ends at the
    /// flush that follows the batch.
    writing: bool,
}

impl<S: Transport> Coalescing<S> {
    /// Wraps `inner`, a stream with `TCP_NODELAY` set, and clears it when the server is on
    /// this host (rule 1). `backlog` counts the commands in flight on this connection; while
    /// any wait, the server must send something at least once per `reply_timeout`.
    pub(crate) fn new(inner: S, backlog: Arc<Backlog>, reply_timeout: Option<Duration>) -> Self {
        let tcp = inner.tcp();
        let segment = tcp
            .and_then(|tcp| socket2::SockRef::from(tcp).tcp_mss().ok())
            .and_then(|mss| usize::try_from(mss).ok())
            .filter(|&mss| mss > 0)
            // Ethernet's segment when the kernel will not say: pushing too often is cheap.
            .unwrap_or(1448);
        // If the option cannot be cleared the connection simply keeps pushing every write.
        let nagle = tcp.is_some_and(|tcp| same_host(tcp) && tcp.set_nodelay(false).is_ok());
        Self {
            inner,
            deadline: reply_timeout.map(|timeout| ReplyDeadline::new(backlog, timeout)),
            nagle,
            push_from: segment.saturating_sub(TLS_MARGIN).max(1),
            pushing: !nagle,
            writing: false,
        }
    }

    /// Turns Nagle's algorithm off for a batch of `len` bytes that spans segments, and back on
    /// for a small one (rule 2). Only the first write of a batch decides.
    fn choose_push(&mut self, len: usize) -> io::Result<()> {
        if self.writing || !self.nagle {
            return Ok(());
        }
        let push = len >= self.push_from;
        if push != self.pushing {
            if let Some(tcp) = self.inner.tcp() {
                tcp.set_nodelay(push)?;
            }
            self.pushing = push;
        }
        Ok(())
    }

    /// Bookkeeping after `written` bytes went out.
    fn wrote(&mut self, written: usize) {
        if written > 0 {
            self.writing = true;
        }
    }
}

/// Whether the socket's peer is this host: a loopback address, or the address the socket
/// itself is bound to (a server reached through one of this host's own interfaces).
fn same_host(tcp: &TcpStream) -> bool {
    match (tcp.local_addr(), tcp.peer_addr()) {
        #[cfg(test)]
        (Ok(_), Ok(peer)) if tests::seen_as_remote(peer.port()) => false,
        (Ok(local), Ok(peer)) => is_same_host(local, peer),
        _ => false,
    }
}

fn is_same_host(local: SocketAddr, peer: SocketAddr) -> bool {
    let peer = peer.ip().to_canonical();
    peer.is_loopback() || peer == local.ip().to_canonical()
}

impl<S: Transport> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if Pin::new(&mut self.inner).poll_read(cx, buf)?.is_pending() {
            if let Some(deadline) = &mut self.deadline {
                deadline.check(cx)?;
            }
            return Poll::Pending;
        }
        if buf.filled().len() > before
            && let Some(deadline) = &mut self.deadline
        {
            deadline.last_read = Instant::now();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Transport> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.choose_push(buf.len())?;
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.wrote(written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        self.choose_push(len)?;
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.wrote(written);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.writing = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::task::Waker;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio::net::TcpListener;

    use super::*;

    impl Transport for DuplexStream {
        fn tcp(&self) -> Option<&TcpStream> {
            None
        }
    }

    /// Ports of servers on this host that connections treat as across a network, for tests of
    /// what only such connections do. Each test server has a port of its own, so marking one
    /// does not change any other test's connections.
    static REMOTE_PORTS: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

    /// Makes connections to `port` on this host run as to another host: with `TCP_NODELAY`.
    pub(crate) fn see_as_remote(port: u16) {
        REMOTE_PORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(port);
    }

    pub(super) fn seen_as_remote(port: u16) -> bool {
        REMOTE_PORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&port)
    }

    /// Drives a [`Coalescing`] stream by hand, one poll at a time.
    struct Probe<S> {
        stream: Coalescing<S>,
    }

    impl<S: Transport> Probe<S> {
        fn over(stream: S) -> Self {
            Self {
                stream: Coalescing::new(stream, Arc::default(), None),
            }
        }

        fn write(&mut self, bytes: &[u8]) -> Poll<io::Result<usize>> {
            let mut cx = Context::from_waker(Waker::noop());
            Pin::new(&mut self.stream).poll_write(&mut cx, bytes)
        }

        fn flush(&mut self) {
            let mut cx = Context::from_waker(Waker::noop());
            let flushed = Pin::new(&mut self.stream).poll_flush(&mut cx);
            assert!(matches!(flushed, Poll::Ready(Ok(()))), "{flushed:?}");
        }
    }

    fn written(poll: Poll<io::Result<usize>>) -> usize {
        match poll {
            Poll::Ready(Ok(n)) => n,
            other => panic!("the write should have gone out, got {other:?}"),
        }
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    #[test]
    fn the_backlog_counts_commands_until_their_guards_drop() {
        let backlog = Backlog::default();
        let first = backlog.track();
        let second = backlog.track();
        assert_eq!((backlog.started(), backlog.unanswered()), (2, 2));
        drop(first);
        assert_eq!((backlog.started(), backlog.unanswered()), (2, 1));
        drop(second);
        assert_eq!((backlog.started(), backlog.unanswered()), (2, 0));
    }

    #[tokio::test]
    async fn to_this_host_only_batches_longer_than_a_segment_turn_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        // As the connector leaves it after the handshake.
        client.set_nodelay(true).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            server.read_to_end(&mut sink).await.map(|_| sink.len())
        });
        let mut probe = Probe::over(client);
        let nodelay = |probe: &Probe<TcpStream>| probe.stream.inner.nodelay().unwrap();
        assert!(!nodelay(&probe), "a connection to this host uses Nagle");

        written(probe.write(PING));
        probe.flush();
        assert!(!nodelay(&probe), "a small batch keeps Nagle on");

        let large = vec![b'x'; probe.stream.push_from];
        let mut sent = 0;
        while sent < large.len() {
            match probe.write(&large[sent..]) {
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(error)) => panic!("write failed: {error}"),
                Poll::Pending => tokio::task::yield_now().await,
            }
            assert!(nodelay(&probe), "a batch of a segment or more is pushed");
        }
        probe.flush();

        written(probe.write(PING));
        probe.flush();
        assert!(!nodelay(&probe), "the next small batch turns Nagle back on");

        drop(probe);
        let received = drain.await.unwrap().unwrap();
        assert_eq!(received, 2 * PING.len() + large.len());
    }

    /// How long the reply-deadline tests let counted commands wait.
    const REPLY_TIMEOUT: Duration = Duration::from_millis(150);

    /// A stream with the reply deadline, over an in-memory pipe to a fake server.
    fn timed(backlog: &Arc<Backlog>) -> (Coalescing<DuplexStream>, DuplexStream) {
        let (ours, server) = duplex(1 << 16);
        let stream = Coalescing::new(ours, backlog.clone(), Some(REPLY_TIMEOUT));
        (stream, server)
    }

    /// Reads once, giving up (with `None`) after `patience`.
    async fn read_within(
        stream: &mut Coalescing<DuplexStream>,
        patience: Duration,
    ) -> Option<io::Result<usize>> {
        let mut reply = [0u8; 64];
        tokio::time::timeout(patience, stream.read(&mut reply))
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_fails_the_read_at_the_deadline() {
        let backlog = Arc::new(Backlog::default());
        let (mut stream, _server) = timed(&backlog);
        let _waiting = backlog.track();
        stream.write_all(PING).await.unwrap();
        let started = Instant::now();

        let read = read_within(&mut stream, Duration::from_secs(5)).await;
        let took = started.elapsed();
        let error = match read {
            Some(Err(error)) => error,
            other => panic!("expected a timeout, got {other:?}"),
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("no reply"), "{error}");
        assert!(
            (REPLY_TIMEOUT..REPLY_TIMEOUT * 4).contains(&took),
            "failed after {took:?}, not at the {REPLY_TIMEOUT:?} deadline"
        );
        assert!(backlog.timed_out());
    }

    #[tokio::test]
    async fn every_reply_renews_the_deadline() {
        let backlog = Arc::new(Backlog::default());
        let (mut stream, mut server) = timed(&backlog);
        let _waiting = backlog.track();
        // Six replies, each well within the timeout of the one before, and together four
        // timeouts long.
        let pace = REPLY_TIMEOUT / 3 * 2;
        let replies = tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(pace).await;
                server.write_all(b"+PONG\r\n").await.unwrap();
            }
            server
        });
        let started = Instant::now();
        let mut received = 0;
        while received < 6 * 7 {
            match read_within(&mut stream, Duration::from_secs(5)).await {
                Some(Ok(n)) if n > 0 => received += n,
                other => panic!(
                    "after {received} bytes and {:?}: {other:?}",
                    started.elapsed()
                ),
            }
        }
        assert!(started.elapsed() > REPLY_TIMEOUT * 3);
        assert!(!backlog.timed_out());
        // And once the replies stop, the deadline holds again.
        let _server = replies.await.unwrap();
        let read = read_within(&mut stream, Duration::from_secs(5)).await;
        assert!(
            matches!(&read, Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_has_no_deadline() {
        let backlog = Arc::new(Backlog::default());
        let (mut stream, _server) = timed(&backlog);
        drop(backlog.track());

        let read = read_within(&mut stream, REPLY_TIMEOUT * 3).await;
        assert!(read.is_none(), "an idle connection's read ended: {read:?}");
        assert!(!backlog.timed_out());
    }

    #[tokio::test]
    async fn a_wait_starts_at_its_first_command_not_at_the_last_reply() {
        let backlog = Arc::new(Backlog::default());
        let (mut stream, mut server) = timed(&backlog);
        let first = backlog.track();
        server.write_all(b"+PONG\r\n").await.unwrap();
        assert!(matches!(
            read_within(&mut stream, Duration::from_secs(5)).await,
            Some(Ok(7))
        ));
        drop(first);
        // Idle for most of a timeout after the last reply, then a new command waits.
        tokio::time::sleep(REPLY_TIMEOUT * 2 / 3).await;
        let _second = backlog.track();
        let started = Instant::now();

        let read = read_within(&mut stream, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(
            matches!(&read, Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
        assert!(
            took >= REPLY_TIMEOUT,
            "the new command was given only {took:?} of its {REPLY_TIMEOUT:?}"
        );
    }

    #[test]
    fn only_a_server_on_this_host_gets_nagle() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let local = addr("10.1.2.3:50000");
        for peer in [
            "127.0.0.1:6379",
            "127.8.0.1:6379",
            "[::1]:6379",
            "[::ffff:127.0.0.1]:6379",
        ] {
            assert!(is_same_host(local, addr(peer)), "{peer} is loopback");
        }
        assert!(is_same_host(local, addr("10.1.2.3:6379")), "own address");
        assert!(is_same_host(
            addr("[::ffff:10.1.2.3]:50000"),
            addr("10.1.2.3:6379")
        ));
        for peer in ["10.1.2.4:6379", "192.168.0.10:6379", "[fd00::1]:6379"] {
            assert!(
                !is_same_host(local, addr(peer)),
                "{peer} is across a network"
            );
        }
    }
}
