//! A connection many tasks share: each request's bytes go into one buffer and its reply comes
//! back in order, read by one task per connection (the driver).
//!
//! redis-rs' `MultiplexedConnection` does the same job through a bounded channel into its
//! driver, a packed copy of every command, a `Framed` codec and a parser built from parser
//! combinators. On a loaded shared lane that machinery was a large share of the client's work
//! per command (see `benches/NOTES.md`). Here a request is written straight into the buffer the
//! driver sends, under a short lock, together with the place its reply goes to; the driver takes
//! the whole buffer in one swap, writes it in one call, and parses replies with
//! [`super::resp`]. A request that finds the buffer empty wakes the driver; the others ride
//! along, so commands that arrive while a batch is being written leave together in the next
//! write, and a lone command is never held back.
//!
//! The driver also **gathers after replies**: when one read answered two requests or more, the
//! tasks it woke are about to send their next commands, so before taking the next batch the
//! driver lets them run once (one scheduler turn, not a timer), and their commands leave in one
//! write. A read that answered one request wakes one task, which has nobody to wait for, so a
//! lone command still leaves at once. With `TCP_NODELAY` (a server on another host, see
//! [`super::coalesce`]) this saves a segment per command; to a server on this host, where
//! Nagle's algorithm already batches in the kernel, it saves the client's workers from parking
//! and being woken for every command (`benches/NOTES.md` has the numbers for both).
//!
//! redis-rs still opens the connection (`HELLO`/`AUTH`, `SELECT`), so setup and its errors are
//! exactly redis-rs'; [`Handoff`] then gives the socket back for this module to drive.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, Pipeline, PushKind, RedisError, RedisFuture, RedisResult, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::resp;

/// How much the driver reads at a time; the buffer grows beyond it only for a reply that does
/// not fit.
const READ_CHUNK: usize = 16 * 1024;

/// The largest reply a connection takes in: past it the connection ends, so a broken or hostile
/// server cannot grow a gateway's memory without bound. Redis' own limit on one string is
/// 512 MiB (`proto-max-bulk-len`).
const MAX_REPLY: usize = 1 << 30;

/// Reads and writes the driver does in one poll before it lets other tasks run.
const TURNS_PER_POLL: usize = 32;

/// One shared connection: cheap to clone, every clone sends on the same socket.
#[derive(Clone)]
pub(crate) struct Wire {
    shared: Arc<Shared>,
    db: i64,
}

struct Shared {
    state: Mutex<State>,
    /// The driver, woken when the first request of a batch is queued.
    driver: AtomicWaker,
}

#[derive(Default)]
struct State {
    /// Requests written and not yet taken by the driver.
    queued: Vec<u8>,
    /// One entry per request whose replies have not all arrived, in the order their bytes
    /// were queued.
    waiting: VecDeque<Waiter>,
    /// Set when the connection ended: requests fail at once.
    ended: bool,
}

struct Waiter {
    /// `None` when nobody waits for the reply (a command sent without wanting one), which is
    /// still read and dropped.
    reply_to: Option<oneshot::Sender<RedisResult<Value>>>,
    expects: Expects,
}

/// What a request is answered with.
enum Expects {
    /// One reply.
    One,
    /// A pipeline's replies: `skip` of them are dropped (a transaction's `MULTI` and `QUEUED`),
    /// then `count` are kept and answered as one array.
    Many {
        skip: usize,
        count: usize,
        transaction: bool,
        seen: usize,
        kept: Vec<Value>,
        /// A transaction's commands that the server refused to queue, by their index.
        refused: Vec<(usize, String)>,
    },
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state whole: a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the connection: the first waiting request gets `error`, the rest (whose replies
    /// were never read) get the error redis-rs gives for a closed connection.
    fn end(&self, error: RedisError) {
        let waiting = {
            let mut state = self.state();
            state.ended = true;
            state.queued = Vec::new();
            std::mem::take(&mut state.waiting)
        };
        let mut error = Some(error);
        for waiter in waiting {
            if let Some(reply_to) = waiter.reply_to {
                let _gone = reply_to.send(Err(error.take().unwrap_or_else(closed)));
            }
        }
    }
}

/// The error for a request on a connection that is gone, as redis-rs words it.
fn closed() -> RedisError {
    RedisError::from(io::Error::from(io::ErrorKind::BrokenPipe))
}

impl Wire {
    /// A connection over `stream`, which must be set up already, and the future that drives
    /// it; the connection ends when the future does or is dropped.
    pub(crate) fn new<S>(stream: S, db: i64) -> (Self, impl Future<Output = ()> + Send + 'static)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: AtomicWaker::new(),
        });
        let driver = Driver {
            shared: shared.clone(),
            stream,
            out: Vec::new(),
            written: 0,
            flushing: false,
            answered: 0,
            waited: false,
            input: vec![0; READ_CHUNK],
            filled: 0,
            parsed: 0,
            replies: Vec::new(),
            done: Vec::new(),
        };
        (Self { shared, db }, driver)
    }

    /// Sends one command and waits for its reply. A server error is a `Value::ServerError`
    /// reply, as with redis-rs' connections.
    pub(crate) async fn send_packed_command(&self, cmd: &Cmd) -> RedisResult<Value> {
        if cmd.args_iter().next().is_none() {
            return Err(empty_command());
        }
        let wants_reply = !cmd.is_no_response();
        let reply = self.queue(
            |out| cmd.write_packed_command(out),
            Expects::One,
            wants_reply,
        )?;
        match reply {
            Some(reply) => reply.await.unwrap_or_else(|_| Err(closed())),
            None => Ok(Value::Nil),
        }
    }

    /// Sends `pipeline` in one write and returns `count` replies after the first `offset`.
    pub(crate) async fn send_packed_commands(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let packed = pipeline.get_packed_pipeline();
        if packed.is_empty() {
            return Err(empty_command());
        }
        let expects = Expects::Many {
            skip: offset,
            count,
            transaction: pipeline.is_transaction(),
            seen: 0,
            kept: Vec::with_capacity(count),
            refused: Vec::new(),
        };
        let reply = self.queue(|out| out.extend_from_slice(&packed), expects, true)?;
        let Some(reply) = reply else {
            return Ok(Vec::new());
        };
        match reply.await.unwrap_or_else(|_| Err(closed()))? {
            Value::Array(values) => Ok(values),
            value => Ok(vec![value]),
        }
    }

    /// The database this connection selected.
    pub(crate) fn db(&self) -> i64 {
        self.db
    }

    fn queue(
        &self,
        write: impl FnOnce(&mut Vec<u8>),
        expects: Expects,
        wants_reply: bool,
    ) -> RedisResult<Option<oneshot::Receiver<RedisResult<Value>>>> {
        let (reply_to, reply) = if wants_reply {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let first = {
            let mut state = self.shared.state();
            if state.ended {
                return Err(closed());
            }
            let first = state.queued.is_empty();
            write(&mut state.queued);
            state.waiting.push_back(Waiter { reply_to, expects });
            first
        };
        // Later requests find the buffer taken or non-empty: the driver is awake already.
        if first {
            self.shared.driver.wake();
        }
        Ok(reply)
    }
}

impl ConnectionLike for Wire {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// Waits at most `limit` for `reply`; past it, fails with an I/O timeout. For a check that owns
/// its connection and drops it afterwards: the late reply then has nobody to confuse.
pub(crate) async fn within<T>(
    limit: std::time::Duration,
    reply: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, reply).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no reply within {limit:?}"),
        ))),
    }
}

fn empty_command() -> RedisError {
    RedisError::from((ErrorKind::Client, "empty command"))
}

/// Writes what callers queued and hands replies to them.
struct Driver<S> {
    shared: Arc<Shared>,
    stream: S,
    /// The batch being written, and how much of it is out.
    out: Vec<u8>,
    written: usize,
    /// The batch is written and the stream is being flushed.
    flushing: bool,
    /// Requests answered since the last batch was taken.
    answered: usize,
    /// The driver already let other tasks run once for the batch it is about to take.
    waited: bool,
    /// Bytes read: `input[parsed..filled]` is not parsed yet.
    input: Vec<u8>,
    filled: usize,
    parsed: usize,
    /// Replies parsed in one read, and the answers they complete; kept to reuse their memory.
    replies: Vec<Value>,
    done: Vec<(oneshot::Sender<RedisResult<Value>>, RedisResult<Value>)>,
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        // Aborted or ended: nobody will read the replies of the requests still waiting.
        self.shared.end(closed());
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..TURNS_PER_POLL {
            let wrote = match this.write(cx) {
                Ok(wrote) => wrote,
                Err(error) => return this.fail(error),
            };
            let read = match this.read(cx) {
                Ok(read) => read,
                Err(error) => return this.fail(error),
            };
            if !wrote && !read {
                return Poll::Pending;
            }
        }
        // Busy: let the tasks this connection just answered run before the next round.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn fail(&mut self, error: RedisError) -> Poll<()> {
        self.shared.end(error);
        Poll::Ready(())
    }

    /// Moves the write side on: finishes the batch in hand or takes the next one. True when
    /// something happened.
    fn write(&mut self, cx: &mut Context<'_>) -> RedisResult<bool> {
        let mut progress = false;
        loop {
            if self.flushing {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => return Ok(progress),
                }
                self.flushing = false;
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                // Registered before looking, so a request queued after the look wakes us.
                self.shared.driver.register(cx.waker());
                let mut state = self.shared.state();
                if state.queued.is_empty() {
                    return Ok(progress);
                }
                if self.answered >= 2 && !self.waited {
                    // Back of the run queue: the tasks just answered run first.
                    self.waited = true;
                    drop(state);
                    cx.waker().wake_by_ref();
                    return Ok(progress);
                }
                self.waited = false;
                self.answered = 0;
                std::mem::swap(&mut state.queued, &mut self.out);
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(RedisError::from(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(written)) => {
                    self.written += written;
                    progress = true;
                    if self.written == self.out.len() {
                        self.flushing = true;
                    }
                }
                Poll::Ready(Err(error)) => return Err(error.into()),
                Poll::Pending => return Ok(progress),
            }
        }
    }

    /// Reads what the socket has and answers the requests it completes. True when something
    /// was read.
    fn read(&mut self, cx: &mut Context<'_>) -> RedisResult<bool> {
        if self.filled == self.input.len() {
            self.make_room()?;
        }
        let mut buf = ReadBuf::new(&mut self.input[self.filled..]);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Err(error.into()),
            Poll::Pending => return Ok(false),
        }
        let read = buf.filled().len();
        if read == 0 {
            return Err(closed());
        }
        self.filled += read;
        while let Some((value, used)) = resp::parse(&self.input[self.parsed..self.filled])? {
            self.parsed += used;
            self.replies.push(value);
        }
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
            if self.input.len() > 4 * READ_CHUNK {
                // A large reply is gone: do not keep its memory on every connection.
                self.input = vec![0; READ_CHUNK];
            }
        }
        self.answer();
        Ok(true)
    }

    /// Room to read more: unparsed bytes move to the front, and the buffer grows when a reply
    /// fills all of it.
    fn make_room(&mut self) -> RedisResult<()> {
        if self.parsed > 0 {
            self.input.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
        }
        if self.filled == self.input.len() {
            if self.input.len() >= MAX_REPLY {
                return Err(RedisError::from((
                    ErrorKind::Parse,
                    "reply too large",
                    format!(
                        "the server sent a reply of more than {} MiB; the connection was closed",
                        MAX_REPLY >> 20
                    ),
                )));
            }
            let grown = self.input.len().saturating_mul(2).min(MAX_REPLY);
            self.input.resize(grown, 0);
        }
        Ok(())
    }

    /// Hands the replies read to the requests waiting for them, outside the lock.
    fn answer(&mut self) {
        if self.replies.is_empty() {
            return;
        }
        {
            let mut state = self.shared.state();
            for value in self.replies.drain(..) {
                if let Value::Push { kind, .. } = &value
                    && !answers_a_request(kind)
                {
                    // Nothing here subscribes or tracks keys; an unsolicited message has
                    // nobody to go to.
                    continue;
                }
                let Some(waiter) = state.waiting.front_mut() else {
                    continue;
                };
                let Some(answer) = waiter.expects.take(value) else {
                    continue;
                };
                if let Some(waiter) = state.waiting.pop_front()
                    && let Some(reply_to) = waiter.reply_to
                {
                    self.done.push((reply_to, answer));
                }
            }
        }
        self.answered += self.done.len();
        for (reply_to, answer) in self.done.drain(..) {
            let _gone = reply_to.send(answer);
        }
    }
}

/// RESP3 push messages that are replies to a request (subscription confirmations), as redis-rs
/// counts them.
fn answers_a_request(kind: &PushKind) -> bool {
    matches!(
        kind,
        PushKind::Subscribe
            | PushKind::PSubscribe
            | PushKind::SSubscribe
            | PushKind::Unsubscribe
            | PushKind::PUnsubscribe
            | PushKind::SUnsubscribe
    )
}

impl Expects {
    /// Takes one reply; the request's answer once it has all of them.
    fn take(&mut self, value: Value) -> Option<RedisResult<Value>> {
        let Expects::Many {
            skip,
            count,
            transaction,
            seen,
            kept,
            refused,
        } = self
        else {
            return Some(Ok(value));
        };
        *seen += 1;
        if *skip > 0 {
            *skip -= 1;
            // A transaction's skipped replies are `MULTI`'s and one per queued command: an
            // error there is a command the server refused, which aborts the transaction.
            if *transaction && let Value::ServerError(error) = &value {
                refused.push((*seen - 2, error.to_string()));
            }
            return None;
        }
        kept.push(value);
        if kept.len() < *count {
            return None;
        }
        if !refused.is_empty() {
            let detail = refused
                .iter()
                .map(|(index, error)| format!("command {index}: {error}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Some(Err(RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
                "transaction aborted: the server refused to queue",
                detail,
            ))));
        }
        Some(Ok(Value::Array(std::mem::take(kept))))
    }
}

/// A stream lent to redis-rs for the connection's setup and given back when redis-rs drops it.
pub(crate) struct Handoff<S> {
    stream: Option<S>,
    back: Arc<Mutex<Option<S>>>,
}

impl<S> Handoff<S> {
    /// Lends `stream`; [`Handoff::take_back`] on the returned slot gets it back once redis-rs'
    /// connection and its driver are dropped.
    pub(crate) fn lend(stream: S) -> (Self, Arc<Mutex<Option<S>>>) {
        let back = Arc::new(Mutex::new(None));
        let lent = Self {
            stream: Some(stream),
            back: back.clone(),
        };
        (lent, back)
    }

    pub(crate) fn take_back(slot: &Mutex<Option<S>>) -> Option<S> {
        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn stream(&mut self) -> io::Result<&mut S> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<S> Drop for Handoff<S> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            *self.back.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Handoff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Handoff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// A connection whose server side the test plays, byte by byte if it likes.
    fn connected() -> (Wire, DuplexStream) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (wire, driver) = Wire::new(client, 0);
        tokio::spawn(driver);
        (wire, server)
    }

    /// Reads until `expected` arrived, so a test knows the requests were written.
    async fn expect(server: &mut DuplexStream, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut got))
            .await
            .expect("the requests reach the server")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    fn incr(key: &str) -> Cmd {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(key);
        cmd
    }

    #[tokio::test]
    async fn replies_reach_their_requests_in_order_however_they_are_split() {
        let (wire, mut server) = connected();
        let (a, b) = (incr("a"), incr("b"));
        let first = tokio::spawn({
            let wire = wire.clone();
            async move { wire.send_packed_command(&a).await }
        });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n").await;
        let second = tokio::spawn({
            let wire = wire.clone();
            async move { wire.send_packed_command(&b).await }
        });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\nb\r\n").await;
        for byte in b":1\r\n$5\r\nhello\r\n" {
            server.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(first.await.unwrap().unwrap(), Value::Int(1));
        assert_eq!(
            second.await.unwrap().unwrap(),
            Value::BulkString(b"hello".to_vec())
        );
    }

    #[tokio::test]
    async fn a_request_whose_caller_left_still_takes_its_reply() {
        let (wire, mut server) = connected();
        let (a, b) = (incr("a"), incr("b"));
        let abandoned = tokio::spawn({
            let wire = wire.clone();
            async move { wire.send_packed_command(&a).await }
        });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n").await;
        abandoned.abort();
        let _ = abandoned.await;
        let kept = tokio::spawn(async move { wire.send_packed_command(&b).await });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\nb\r\n").await;
        server.write_all(b":1\r\n:2\r\n").await.unwrap();
        assert_eq!(kept.await.unwrap().unwrap(), Value::Int(2));
    }

    #[tokio::test]
    async fn a_pipeline_keeps_the_replies_after_its_offset() {
        let (wire, mut server) = connected();
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg("a").cmd("INCR").arg("b");
        let sent = tokio::spawn(async move { wire.send_packed_commands(&pipe, 3, 1).await });
        let mut request = vec![0; 64];
        let _ = server.read(&mut request).await.unwrap();
        server
            .write_all(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n:7\r\n")
            .await
            .unwrap();
        assert_eq!(
            sent.await.unwrap().unwrap(),
            vec![Value::Array(vec![Value::Int(1), Value::Int(7)])]
        );
    }

    #[tokio::test]
    async fn a_transaction_with_a_refused_command_says_which() {
        let (wire, mut server) = connected();
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg("a").cmd("NOPE");
        let sent = tokio::spawn(async move { wire.send_packed_commands(&pipe, 3, 1).await });
        let mut request = vec![0; 64];
        let _ = server.read(&mut request).await.unwrap();
        server
            .write_all(
                b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOPE'\r\n\
                  -EXECABORT Transaction discarded because of previous errors.\r\n",
            )
            .await
            .unwrap();
        let error = sent.await.unwrap().unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
        );
        let text = error.to_string();
        assert!(
            text.contains("command 1") && text.contains("NOPE"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn messages_nobody_asked_for_are_skipped() {
        let (wire, mut server) = connected();
        let a = incr("a");
        let sent = tokio::spawn(async move { wire.send_packed_command(&a).await });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n").await;
        server
            .write_all(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n:5\r\n")
            .await
            .unwrap();
        assert_eq!(sent.await.unwrap().unwrap(), Value::Int(5));
    }

    #[tokio::test]
    async fn when_the_server_hangs_up_every_waiting_request_fails_and_later_ones_at_once() {
        let (wire, mut server) = connected();
        let mut waiting = Vec::new();
        for key in ["a", "b", "c"] {
            let wire = wire.clone();
            let cmd = incr(key);
            waiting.push(tokio::spawn(
                async move { wire.send_packed_command(&cmd).await },
            ));
        }
        let mut request = vec![0; 32];
        let _ = server.read(&mut request).await.unwrap();
        drop(server);
        for request in waiting {
            let error = tokio::time::timeout(Duration::from_secs(5), request)
                .await
                .expect("a request on a closed connection does not hang")
                .unwrap()
                .unwrap_err();
            assert!(error.is_connection_dropped(), "{error}");
        }
        let error = wire.send_packed_command(&incr("d")).await.unwrap_err();
        assert!(error.is_connection_dropped(), "{error}");
    }

    #[tokio::test]
    async fn a_stopped_driver_fails_the_requests_it_left() {
        let (client, mut server) = tokio::io::duplex(1024);
        let (wire, driver) = Wire::new(client, 0);
        let driver = tokio::spawn(driver);
        let a = incr("a");
        let sent = tokio::spawn({
            let wire = wire.clone();
            async move { wire.send_packed_command(&a).await }
        });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n").await;
        driver.abort();
        let error = tokio::time::timeout(Duration::from_secs(5), sent)
            .await
            .expect("no request outlives its driver")
            .unwrap()
            .unwrap_err();
        assert!(error.is_connection_dropped(), "{error}");
    }

    #[tokio::test]
    async fn a_reply_larger_than_the_read_buffer_arrives_whole() {
        let (wire, mut server) = connected();
        let get = {
            let mut cmd = redis::cmd("GET");
            cmd.arg("big");
            cmd
        };
        let sent = tokio::spawn(async move { wire.send_packed_command(&get).await });
        expect(&mut server, b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n").await;
        let value = vec![b'x'; 5 * READ_CHUNK + 3];
        let mut reply = format!("${}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\n");
        server.write_all(&reply).await.unwrap();
        assert_eq!(sent.await.unwrap().unwrap(), Value::BulkString(value));
    }

    #[tokio::test]
    async fn garbage_from_the_server_ends_the_connection_with_a_parse_error() {
        let (wire, mut server) = connected();
        let a = incr("a");
        let sent = tokio::spawn(async move { wire.send_packed_command(&a).await });
        expect(&mut server, b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n").await;
        server.write_all(b"?what\r\n").await.unwrap();
        let error = sent.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Parse, "{error}");
    }
}
