//! Write coalescing for multiplexed connections: batching without Nagle's algorithm.
//!
//! Many tasks share one socket, and each of their commands is small. Written one by one with
//! `TCP_NODELAY`, every command costs a `write` and a segment on our side and a wake-up, a
//! read and an event-loop turn on the server, which on a gateway host often shares the cores
//! with us. Nagle's algorithm would batch them, but it holds the tail of any command larger
//! than a segment until the server acknowledges the head, and the server delays that
//! acknowledgement (up to 40 ms on Linux) because it is waiting for the rest of the command.
//! That stall is why go-redis, hiredis and Lettuce all set `TCP_NODELAY`, and so do we.
//!
//! [`Coalescing`] batches in user space instead. redis-rs writes the commands it has collected
//! when its queue runs dry. If an earlier write is still waiting for its reply at that moment,
//! more commands are probably on their way from tasks that are ready to run, so the write waits
//! for one turn of the scheduler: the driver task wakes itself and steps aside, and everything
//! queued meanwhile goes out in the same `write`. A task that is alone on its connection never
//! waits, because its previous reply is always in before it writes again, and nothing ever
//! waits for the server: the turn ends as soon as the scheduler comes back to the driver.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes of this many bytes go out without waiting: the batch is worth a segment already.
pub const MAX_HELD: usize = 16 * 1024;

/// A stream that lets a write wait one scheduler turn while earlier writes are unanswered.
/// See the module documentation.
pub struct Coalescing<S> {
    inner: S,
    /// Bytes went out and no bytes came back since.
    awaiting_reply: bool,
    /// A batch is being written: the rest of it must not wait, or the server would be left
    /// with half a command. Ends at the flush that follows the batch.
    writing: bool,
    /// The current write already waited its turn.
    waited: bool,
}

impl<S> Coalescing<S> {
    /// Wraps `inner`; nothing waits until the first write is out.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            awaiting_reply: false,
            writing: false,
            waited: false,
        }
    }

    /// Whether a write of `len` bytes should step aside for one turn first. If so, the task is
    /// already woken to come back.
    fn should_wait(&mut self, len: usize, cx: &mut Context<'_>) -> bool {
        if self.writing || self.waited || !self.awaiting_reply || len >= MAX_HELD {
            return false;
        }
        self.waited = true;
        cx.waker().wake_by_ref();
        true
    }

    /// Bookkeeping after `written` bytes went out.
    fn wrote(&mut self, written: usize) {
        if written > 0 {
            self.writing = true;
            self.awaiting_reply = true;
            self.waited = false;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.awaiting_reply = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.should_wait(buf.len(), cx) {
            return Poll::Pending;
        }
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
        if self.should_wait(len, cx) {
            return Poll::Pending;
        }
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
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    /// Counts wake-ups, to see that a write that steps aside asks to come back.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Probe {
        stream: Coalescing<DuplexStream>,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Probe {
        fn new() -> (Self, DuplexStream) {
            let (ours, server) = duplex(1 << 20);
            let wakes = Arc::new(Wakes::default());
            let probe = Self {
                stream: Coalescing::new(ours),
                waker: Waker::from(wakes.clone()),
                wakes,
            };
            (probe, server)
        }

        fn write(&mut self, bytes: &[u8]) -> Poll<io::Result<usize>> {
            let mut cx = Context::from_waker(&self.waker);
            Pin::new(&mut self.stream).poll_write(&mut cx, bytes)
        }

        fn flush(&mut self) {
            let mut cx = Context::from_waker(&self.waker);
            let flushed = Pin::new(&mut self.stream).poll_flush(&mut cx);
            assert!(matches!(flushed, Poll::Ready(Ok(()))), "{flushed:?}");
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
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
    fn a_write_with_nothing_unanswered_goes_out_at_once() {
        let (mut probe, _server) = Probe::new();
        assert_eq!(written(probe.write(PING)), PING.len());
        assert_eq!(probe.wakes(), 0);
    }

    #[test]
    fn a_new_batch_behind_an_unanswered_one_waits_one_turn() {
        let (mut probe, _server) = Probe::new();
        written(probe.write(PING));
        probe.flush();

        assert!(
            probe.write(PING).is_pending(),
            "the second batch should step aside"
        );
        assert_eq!(
            probe.wakes(),
            1,
            "stepping aside must wake the task to come back"
        );
        assert_eq!(
            written(probe.write(PING)),
            PING.len(),
            "only one turn is waited"
        );
        assert_eq!(probe.wakes(), 1);
    }

    #[test]
    fn the_rest_of_a_batch_never_waits() {
        let (mut probe, _server) = Probe::new();
        written(probe.write(PING));
        // No flush yet: the same batch goes on, as after a partial write.
        written(probe.write(PING));
        assert_eq!(probe.wakes(), 0);
    }

    #[tokio::test]
    async fn a_reply_ends_the_wait_before_it_starts() {
        let (mut probe, mut server) = Probe::new();
        written(probe.write(PING));
        probe.flush();
        let mut request = [0u8; PING.len()];
        server.read_exact(&mut request).await.unwrap();
        server.write_all(b"+PONG\r\n").await.unwrap();
        let mut reply = [0u8; 7];
        probe.stream.read_exact(&mut reply).await.unwrap();

        assert_eq!(written(probe.write(PING)), PING.len());
        assert_eq!(probe.wakes(), 0);
    }

    #[test]
    fn a_large_batch_goes_out_at_once() {
        let (mut probe, _server) = Probe::new();
        written(probe.write(PING));
        probe.flush();
        let large = vec![b'x'; MAX_HELD];
        assert_eq!(written(probe.write(&large)), MAX_HELD);
        assert_eq!(probe.wakes(), 0);
    }
}
