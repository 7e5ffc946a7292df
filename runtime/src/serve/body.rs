//! The body type of the gateway: one boxed body for what flows both ways (client requests,
//! backend responses, and the answers the gateway writes itself), with a bound on how long a
//! streamed body may go without sending anything.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep};

use crate::pipeline::BoxError;

/// A request or response body as the gateway passes it on.
pub(crate) struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// `body`, streamed: it fails once it sends nothing for `idle`, so that a client or
    /// backend that stalls mid-body cannot hold the gateway's connections forever.
    pub(crate) fn streamed<B>(body: B, idle: Duration) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        Self(UnsyncBoxBody::new(Idle::new(body, idle, None)))
    }

    /// Like [`Body::streamed`], and `received` turns true once the whole body has arrived.
    pub(crate) fn tracked<B>(body: B, idle: Duration, received: Arc<AtomicBool>) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            received.store(true, Ordering::Relaxed);
        }
        Self(UnsyncBoxBody::new(Idle::new(body, idle, Some(received))))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        let full = http_body_util::Full::new(bytes).map_err(|never| match never {});
        Self(UnsyncBoxBody::new(full))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::from(Bytes::from(text))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("size_hint", &http_body::Body::size_hint(&self.0))
            .finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// A body that fails when it sends nothing for `idle`.
struct Idle<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Set once the body has ended, for whoever must know whether all of it arrived.
    received: Option<Arc<AtomicBool>>,
}

impl<B> Idle<B> {
    fn new(inner: B, idle: Duration, received: Option<Arc<AtomicBool>>) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            received,
        }
    }
}

/// A streamed body stalled longer than the gateway allows: an I/O timeout, so that whoever
/// reads the body can tell it from a broken one.
fn stalled(idle: Duration) -> BoxError {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the body sent nothing for {idle:?}"),
    ))
}

impl<B> http_body::Body for Idle<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                let ended = frame.is_none() || self.inner.is_end_stream();
                if let (true, Some(received)) = (ended, &self.received) {
                    received.store(true, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(stalled(self.idle)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_after_the_idle_bound() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_of(receiver);
        let body = Body::streamed(StreamBody::new(stream), Duration::from_secs(2));
        sender
            .send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .unwrap();
        let read = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!read.is_finished(), "within the bound the body waits");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let error = read.await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "the body sent nothing for 2s");
        drop(sender);
    }

    /// A stream of what `receiver` gets, without pulling in tokio-stream.
    fn tokio_stream_of<T>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        }))
    }
}
